"""ARPG sampler: official runs replayed token for token from their recorded draws, schedules, filters, the KV cache's
life cycle, zero-shot editing and the raster baseline.

Run names, step counts, shapes and tolerances come from each case's ``config.json``, tensor names and ``CASES.md``.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from support.arpg_fixtures import cases, close, fixture_arpg, is_arpg, tolerances

from flowar.models.arpg import ARPGConfig, ARPGTransformer
from flowar.samplers.arpg.decode import DecodeSettings, sample_arpg
from flowar.samplers.arpg.logits import filter_logits, official_top_p_filter
from flowar.samplers.arpg.noise import SeededARPGNoise, sample_tokens
from flowar.samplers.arpg.schedule import guidance_scale, tokens_per_step
from flowar.samplers.common import KnownTokens, Trace

CPU = torch.device("cpu")
RUN_INPUTS = ("condition", "order_uniform", "u_cdf_mid")  # what the test feeds, not what it checks


class RecordedDraws:
    """Replays an official run: its order uniforms, then each step's per-token uniforms (inverse-CDF midpoints)."""

    def __init__(self, tensors: dict, run: str) -> None:
        self.order = tensors[f"{run}.order_uniform"]
        pattern = re.compile(rf"^{re.escape(run)}\.step(\d+)\.u_cdf_mid$")
        steps = sorted((int(m.group(1)), name) for name in tensors if (m := pattern.match(name)))
        self.tokens = [tensors[name] for _, name in steps]

    def order_uniforms(self, count: int) -> torch.Tensor:
        assert self.order.shape == (count,)
        return self.order

    def token_uniforms(self, shape: tuple[int, int]) -> torch.Tensor:
        uniforms = self.tokens.pop(0)
        assert tuple(uniforms.shape) == shape
        return uniforms


class StopAfter(Exception):
    """Raised by a callback to end a run early (as an interrupt would)."""


def run_settings(run: dict) -> DecodeSettings:
    return DecodeSettings(steps=run["num_iter"], schedule=run["sample_schedule"], guidance=run["guidance_scale"],
                          cfg_schedule=run["cfg_schedule"], temperature=run["temperature"], top_k=run["top_k"],
                          top_p=run["top_p"], top_p_mode="official")


def stopping_callback(stop_after: int | None):
    def callback(step: int, total: int, preview) -> None:
        if step == stop_after:
            raise StopAfter

    return callback


def tolerance_for(name: str, tol: dict) -> tuple[float, float]:
    if name.endswith("logits"):
        return tol["logits_atol"], tol["logits_rtol"]
    if name.endswith("probs"):
        return tol["probs_atol"], 0.0
    if name.endswith("_cache"):
        return tol["hidden_atol"], 0.0
    return 0.0, 0.0  # the float64 guidance scale is the same arithmetic: exact


def sampler_runs() -> list:
    params = []
    for param in cases(is_arpg):
        case = param.values[0]
        if case is None:
            params.append(param)
            continue
        params += [pytest.param(case, run, id=f"{case.name}:{run['name']}") for run in case.config.get("runs", [])]
    return params


@pytest.mark.parametrize(("case", "run"), sampler_runs())
def test_arpg_sampler_replays_official_run(case, run) -> None:
    model, tensors, tol, name = fixture_arpg(case), case.tensors, tolerances(case), run["name"]
    seq_len, stop_after = run["seq_len"], run.get("stop_after")
    grid = math.isqrt(seq_len)
    trace = Trace()
    spied = spy_on_caches(model)
    try:
        tokens = sample_arpg(model, tensors[f"{name}.condition"], grid=(grid, grid), settings=run_settings(run),
                             draws=RecordedDraws(tensors, name), device=CPU, callback=stopping_callback(stop_after),
                             trace=trace)
    except StopAfter:
        tokens = None
    assert (tokens is None) == (stop_after is not None)
    assert len(spied) == 1 and not spied[0].allocated  # one allocation per run, released even when stopped early

    steps = sorted({int(key.split(".")[0][4:]) for key in trace.values if key.startswith("step")})
    per_step = [trace.values[f"step{k}.sampled"].shape[1] for k in steps]
    full_schedule = tokens_per_step(seq_len, run["num_iter"], run["sample_schedule"])
    assert per_step == full_schedule[: len(steps)] == run.get("counts", run.get("counts_full_schedule"))[: len(steps)]
    if "tokens_generation_order" not in trace.values:
        trace.values["tokens_generation_order"] = torch.cat([trace.values[f"step{k}.sampled"] for k in steps], 1)

    compared, worst = set(), {}
    for key, expected in tensors.items():
        if not key.startswith(name + ".") or key.endswith(RUN_INPUTS):
            continue
        what = key[len(name) + 1:]
        assert what in trace.values, f"{key} not reproduced"
        atol, rtol = tolerance_for(what, tol)
        error = close(trace.values[what], expected, atol, rtol, msg=key)
        worst[what.split(".")[-1]] = max(worst.get(what.split(".")[-1], 0.0), error)
        compared.add(key)
    assert any(key.endswith(".sampled") for key in compared)
    if tokens is not None:
        close(tokens.flatten(1), tensors[f"{name}.tokens_raster"], 0, msg="tokens_raster")
    print(f"{case.name}:{name} max abs errors {worst}")


# ---------------------------------------------------------------------------------------------------- schedules

def test_official_token_counts_for_256_tokens() -> None:
    """The per-step counts the official code gives for the released 256-token grid (research note, from the code)."""
    arccos_32 = [6, 5, 5, 5, 5, 5, 5, 6, 5, 5, 6, 5, 6, 5, 6, 6, 6, 6, 6, 7, 6, 7, 7, 8, 8, 8, 9, 10, 11, 14, 17, 40]
    assert tokens_per_step(256, 32, "arccos") == arccos_32
    cosine = tokens_per_step(256, 64, "cosine")
    assert cosine[:13] == [1] * 13 and cosine[13] == 2 and sum(cosine) == 256
    assert tokens_per_step(256, 64, "arccos")[-3:] == [10, 12, 28]


@pytest.mark.parametrize("count", [1, 2, 7, 16, 100, 256])
def test_every_step_decodes_at_least_one_token(count: int) -> None:
    for steps in range(1, count + 1):
        for schedule in ("arccos", "cosine"):
            counts = tokens_per_step(count, steps, schedule)
            assert len(counts) == steps and sum(counts) == count and min(counts) >= 1
    assert tokens_per_step(count, 999, "raster") == [1] * count


def test_schedule_errors() -> None:
    with pytest.raises(ValueError, match="between 1 and the number of tokens to generate \\(16\\), got 17"):
        tokens_per_step(16, 17, "arccos")
    with pytest.raises(ValueError, match="every token position is already known"):
        tokens_per_step(0, 4, "arccos")
    with pytest.raises(ValueError, match="unknown sample schedule 'linear'"):
        tokens_per_step(16, 4, "linear")


def test_linear_guidance_reaches_the_full_scale_on_the_last_step() -> None:
    assert guidance_scale(4.0, 256, 256, "linear") == 4.0
    assert guidance_scale(4.0, 64, 256, "linear") == 1.75
    assert guidance_scale(4.0, 3, 256, "constant") == 4.0


# ------------------------------------------------------------------------------------------------------ filters

def test_inverse_cdf_sampling_picks_the_interval_of_each_uniform() -> None:
    probs = torch.tensor([[[0.1, 0.0, 0.6, 0.3]]]).expand(1, 4, 4)
    uniforms = torch.tensor([[0.05, 0.1, 0.69, 0.95]])
    assert sample_tokens(probs, uniforms).tolist() == [[0, 2, 2, 3]]  # the zero-probability token is never drawn


def test_correct_top_p_keeps_the_nucleus_per_position() -> None:
    logits = torch.log(torch.tensor([[[0.5, 0.3, 0.15, 0.05], [0.05, 0.15, 0.3, 0.5]]]))  # (1, 2, 4)
    kept = torch.isfinite(filter_logits(logits, temperature=1.0, top_k=0, top_p=0.7, top_p_mode="correct"))
    assert kept.tolist() == [[[True, True, False, False], [False, False, True, True]]]


def test_official_top_p_scatters_along_the_token_axis() -> None:
    """Three positions, three codes, each position preferring its own code: at p = 0.5 a nucleus keeps each
    position's favourite, while the official scatter along the token axis keeps code 0 everywhere."""
    logits = torch.tensor([[[3.0, 2.0, 1.0], [1.0, 3.0, 2.0], [2.0, 1.0, 3.0]]])  # (1, 3 positions, 3 codes)
    official = torch.isfinite(official_top_p_filter(logits, 0.5))
    assert official.tolist() == [[[True, False, False]] * 3]
    correct = torch.isfinite(filter_logits(logits, temperature=1.0, top_k=0, top_p=0.5, top_p_mode="correct"))
    assert correct.tolist() == [torch.eye(3, dtype=torch.bool).tolist()]


def test_official_top_p_refuses_what_crashes_officially() -> None:
    with pytest.raises(ValueError, match="official top-p filter cannot run here.*top_p_mode='correct'"):
        official_top_p_filter(torch.randn(2, 3, 64), 0.9)


# ------------------------------------------------------------------------------------------ runs on a tiny model

def tiny_model(seed: int = 0, grid: int = 4) -> ARPGTransformer:
    config = ARPGConfig(dim=32, n_layer=4, n_head=2, vocab_size=16, num_classes=5, block_size=grid * grid,
                        multiple_of=16)
    torch.manual_seed(seed)
    model = ARPGTransformer(config).eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return model


def spy_on_caches(model: ARPGTransformer) -> list:
    """Record every cache the model hands out (the allocation counter the life-cycle tests read)."""
    allocated, factory = [], model.new_kv_cache

    def recorded(*args, **kwargs):
        allocated.append(factory(*args, **kwargs))
        return allocated[-1]

    model.new_kv_cache = recorded
    return allocated


def run(model, labels=(1, 3), **options) -> tuple[torch.Tensor, Trace]:
    settings = {"steps": 4, "guidance": 3.0}
    known = options.pop("known", None)
    grid = options.pop("grid", (model.config.grid_size,) * 2)
    settings.update(options.pop("settings", {}))
    trace = Trace()
    tokens = sample_arpg(model, torch.tensor(labels), grid=grid, settings=DecodeSettings(**settings),
                         draws=options.pop("draws", SeededARPGNoise(7)), device=CPU, known=known, trace=trace,
                         **options)
    return tokens, trace


def at_step(trace: Trace, step: int, name: str) -> torch.Tensor:
    """What our own sampler recorded at ``step`` (these runs use tiny models, not fixtures)."""
    return trace.values[f"step{step}.{name}"]


def test_cache_is_allocated_once_at_final_length_and_released() -> None:
    model = tiny_model()
    spied = spy_on_caches(model)
    tokens, trace = run(model)
    assert tokens.shape == (2, 4, 4) and len(spied) == 1
    cache = spied[0]
    counts = tokens_per_step(16, 4, "arccos")
    assert cache.shared.max_len == 1 + 16 - counts[-1]  # the last step's tokens are never fed back
    assert at_step(trace, len(counts) - 1, "cross_cache_len").item() == cache.shared.max_len  # filled exactly, never grown
    assert not cache.allocated and trace.nfe == 4


def test_interrupted_run_releases_its_cache() -> None:
    model = tiny_model()
    spied = spy_on_caches(model)
    seen = []

    def interrupt(step: int, total: int, preview) -> None:
        seen.append(spied[0].allocated)
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(model, callback=interrupt)
    assert seen == [True, True] and not spied[0].allocated


def test_same_seed_same_tokens_and_batch_rows_differ() -> None:
    model = tiny_model()
    first, _ = run(model, draws=SeededARPGNoise(11))
    assert torch.equal(first, run(model, draws=SeededARPGNoise(11))[0])
    assert not torch.equal(first, run(model, draws=SeededARPGNoise(12))[0])
    assert not torch.equal(first[0], first[1])


def test_guidance_one_runs_a_single_batch() -> None:
    tokens, trace = run(tiny_model(), settings={"guidance": 1.0})
    assert at_step(trace, 0, "input_ids").shape == (2, 1) and f"step{0}.uncond_logits" not in trace.values
    assert tokens.shape == (2, 4, 4)


def test_raster_schedule_decodes_one_position_per_step_in_reading_order() -> None:
    tokens, trace = run(tiny_model(), settings={"schedule": "raster"})
    assert trace.nfe == 16
    assert trace.values["orders"].tolist() == list(range(1, 17))
    assert [trace.values[f"step{k}.query_pos_index"].tolist() for k in range(16)] == [[k + 1] for k in range(16)]
    assert torch.equal(trace.values["tokens_raster"], tokens.flatten(1))


def test_inpainting_keeps_known_tokens_and_decodes_only_the_rest() -> None:
    model = tiny_model()
    original = torch.randint(0, 16, (2, 4, 4), generator=torch.Generator().manual_seed(3))
    keep = torch.ones(4, 4, dtype=torch.bool)
    keep[1:3, 1:3] = False  # regenerate the centre
    tokens, trace = run(model, known=KnownTokens.from_grid(original, keep))
    assert torch.equal(tokens[:, keep], original[:, keep])
    assert sorted(trace.values["orders"].tolist()) == [1 + 4 * r + c for r in (1, 2) for c in (1, 2)]
    assert at_step(trace, 0, "input_ids").shape == (4, 1 + 12)  # class + known tokens prefilled, both halves
    known_rows = 1 + keep.flatten().nonzero().flatten()
    assert at_step(trace, 0, "key_pos_index").tolist() == [0, *known_rows.tolist()]
    assert sum(trace.values[f"step{k}.sampled"].shape[1] for k in range(4)) == 4


def test_known_tokens_change_what_is_generated() -> None:
    model = tiny_model()
    keep = torch.ones(4, 4, dtype=torch.bool)
    keep[:, 2:] = False
    zeros, ones = torch.zeros(2, 4, 4, dtype=torch.long), torch.ones(2, 4, 4, dtype=torch.long)
    from_zeros, _ = run(model, known=KnownTokens.from_grid(zeros, keep), draws=SeededARPGNoise(5))
    from_ones, _ = run(model, known=KnownTokens.from_grid(ones, keep), draws=SeededARPGNoise(5))
    assert not torch.equal(from_zeros[:, ~keep], from_ones[:, ~keep])


def test_outpainting_on_a_larger_grid_than_trained() -> None:
    model = tiny_model()
    original = torch.randint(0, 16, (1, 5, 6), generator=torch.Generator().manual_seed(4))
    keep = torch.zeros(5, 6, dtype=torch.bool)
    keep[1:4, 1:5] = True  # the known image in the middle, a border to generate
    known = KnownTokens.from_grid(original, keep)
    tokens, trace = run(model, labels=(2,), known=known, grid=(5, 6), settings={"steps": 6})
    assert tokens.shape == (1, 5, 6) and torch.equal(tokens[:, keep], original[:, keep])
    assert trace.values["orders"].max().item() <= 30 and trace.nfe == 6


def test_non_finite_logits_are_a_clear_error() -> None:
    model = tiny_model()
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    spied = spy_on_caches(model)
    with pytest.raises(FloatingPointError, match="NaN or infinite logits"):
        run(model)
    assert not spied[0].allocated


@pytest.mark.parametrize(("options", "message"), [
    ({"settings": {"steps": 17}}, "between 1 and the number of tokens to generate \\(16\\)"),
    ({"settings": {"steps": 0}}, "between 1 and the number"),
    ({"settings": {"top_k": 17}}, "top_k must be between 0 \\(off\\) and the vocabulary size 16"),
    ({"settings": {"top_p": 0.0}}, "top_p must be in \\(0, 1\\]"),
    ({"settings": {"temperature": -1.0}}, "temperature must be >= 0"),
    ({"settings": {"schedule": "zigzag"}}, "schedule must be one of arccos, cosine, raster"),
    ({"settings": {"cfg_schedule": "cosine"}}, "cfg_schedule must be one of linear, constant"),
    ({"labels": (0, 5)}, "class index 5 is out of range: this model has classes 0..4"),
    ({"known": KnownTokens.from_grid(torch.zeros(2, 3, 3, dtype=torch.long), torch.ones(3, 3, dtype=torch.bool))},
     "do not fit a batch of 2 on a 4x4 token grid"),
    ({"known": KnownTokens.from_grid(torch.full((2, 4, 4), 99), torch.eye(4, dtype=torch.bool))},
     "codebook indices 0..15"),
    ({"known": KnownTokens.from_grid(torch.zeros(2, 4, 4, dtype=torch.long), torch.ones(4, 4, dtype=torch.bool))},
     "every token position is already known"),
])
def test_bad_options_are_clear_errors(options: dict, message: str) -> None:
    labels = options.pop("labels", (1, 3))
    with pytest.raises(ValueError, match=message):
        run(tiny_model(), labels=labels, **options)
