"""MAR sampling loop: full recorded runs replayed (orders, head noise), inpainting, grouping, errors.

Runs and every name come from the case's ``config.json`` (``runs``) and tensor names.
"""

from __future__ import annotations

import pytest
import torch
from support.fixtures import case_params
from support.mar_fixtures import fixture_mar, within

from flowar.models.mar import MAR, MARConfig, unpatchify
from flowar.samplers.common import KnownTokens, Trace
from flowar.samplers.mar.diffusion import diffusion_schedule
from flowar.samplers.mar.noise import SeededMARNoise
from flowar.samplers.mar.sample import sample_mar


def run_params() -> list:
    params = []
    for param in case_params("mar"):
        case = param.values[0]
        if case is None:
            params.append(param)
        else:
            params += [pytest.param(case, run, id=f"{case.name}:{run['name']}") for run in case.config.get("runs", [])]
    return params or [pytest.param(None, None, marks=pytest.mark.skip(reason="no MAR sampling runs in the fixtures"))]


class RecordedMARNoise:
    """Replays one run's recorded draws. With CFG the official head carries a second (unconditional) half whose
    draws never reach the result; only the leading rows are used."""

    def __init__(self, tensors: dict, run: str) -> None:
        self.tensors, self.run = tensors, run

    def orders(self, batch: int, length: int) -> torch.Tensor:
        return self.tensors[f"{self.run}.orders"]

    def start(self, iteration: int, rows: int, channels: int) -> torch.Tensor:
        return self.tensors[f"{self.run}.iter{iteration}.diff_init_noise"][:rows]

    def step(self, iteration: int, step: int, rows: int, channels: int) -> torch.Tensor:
        return self.tensors[f"{self.run}.iter{iteration}.diff_step_noise"][step, :rows]


@pytest.mark.parametrize(("case", "run"), run_params())
def test_mar_sampling_run_replays_fixture(case, run) -> None:
    tensors, tol, name = case.tensors, case.config["tolerances"], run["name"]
    model = fixture_mar(case)
    labels = tensors.get(f"{name}.labels")
    trace = Trace()
    with torch.no_grad():
        tokens = sample_mar(model, labels=labels, batch=run["bsz"], num_iter=run["num_iter"], cfg=run["cfg"],
                            cfg_schedule=run["cfg_schedule"], temperature=run["temperature"],
                            schedule=diffusion_schedule(int(run["num_sampling_steps"])),
                            noise=RecordedMARNoise(tensors, name), device=torch.device("cpu"), trace=trace)
    compared = 0
    for key, value in trace.values.items():
        expected = tensors.get(f"{name}.{key}")
        if expected is None:
            continue
        if expected.dtype == torch.bool or expected.dtype == torch.int64:
            assert torch.equal(value, expected), key
        elif key.endswith(("sampled", "z_sel")) and value.shape[0] < expected.shape[0]:
            # official CFG rows: [cond; uncond]; our head keeps only the conditional rows it needs
            within(value, expected[: value.shape[0]], tol["per_iteration_rel"], key)
        else:
            within(value, expected, tol["per_iteration_rel"], key)
        compared += 1
    assert compared >= 6 * run["num_iter"]
    grid = int(model.config.seq_len**0.5)
    latents = unpatchify(tokens, grid, model.config.vae_embed_dim, model.config.patch_size)
    expected = tensors[f"{name}.output_tokens"]
    error = (latents - expected).abs().max().item()
    assert error <= tol["final_tokens_rel"] * expected.abs().max().item()
    revealed = [int(tensors[f"{name}.iter{k}.mask_to_pred"].sum()) // run["bsz"] for k in range(run["num_iter"])]
    assert revealed == run["tokens_per_iter"]
    for k, value in enumerate(run["cfg_iter"]):
        assert trace.values[f"iter{k}.cfg_iter"].item() == pytest.approx(value, rel=1e-6)


# ----------------------------------------------------------------------------------------- beyond the official

def tiny_mar(seed: int = 0) -> MAR:
    torch.manual_seed(seed)
    config = MARConfig(16, 1, 2, 16, 1, 2, diffloss_d=1, diffloss_w=16, img_size=64, class_num=10, buffer_size=2)
    model = MAR(config).eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    return model


def run_tiny(model: MAR, seed: int = 1, **overrides) -> torch.Tensor:
    settings = {"labels": torch.tensor([1, 2]), "batch": 2, "num_iter": 4, "cfg": 2.0, "cfg_schedule": "linear",
                "temperature": 1.0, "schedule": diffusion_schedule(5), "noise": SeededMARNoise(seed),
                "device": torch.device("cpu")}
    with torch.no_grad():
        return sample_mar(model, **{**settings, **overrides})


def test_same_seed_same_tokens_and_unconditional_runs() -> None:
    model = tiny_mar()
    assert torch.equal(run_tiny(model), run_tiny(model))
    assert not torch.equal(run_tiny(model), run_tiny(model, seed=2))
    uncond = run_tiny(model, labels=None, cfg=1.0)
    assert uncond.shape == (2, 16, 16) and torch.isfinite(uncond).all()


def test_inpainting_keeps_known_tokens_with_different_masks_per_sample() -> None:
    model = tiny_mar()
    known_tokens = torch.randn(2, 16, 16)
    known = torch.zeros(2, 16, dtype=torch.bool)
    known[0, :10] = True  # sample 0: 6 unknown
    known[1, 4:7] = True  # sample 1: 13 unknown (rows need separate transformer calls)
    calls = []
    original = model.forward

    def counting(tokens, mask, class_rows):
        calls.append(tokens.shape[0])
        return original(tokens, mask, class_rows)

    model.forward = counting
    out = run_tiny(model, known=KnownTokens(known_tokens, known))
    assert torch.equal(out[known], known_tokens[known])
    assert not torch.allclose(out[~known], torch.zeros(()))
    assert calls[0] == 2  # two groups of one sample, each doubled for guidance


def test_inpainting_with_nothing_unknown_in_one_row() -> None:
    model = tiny_mar()
    known = torch.zeros(2, 16, dtype=torch.bool)
    known[0] = True
    tokens = torch.randn(2, 16, 16)
    out = run_tiny(model, known=KnownTokens(tokens, known))
    assert torch.equal(out[0], tokens[0])


def test_each_iteration_reveals_tokens_and_all_are_revealed() -> None:
    model = tiny_mar()
    trace = Trace()
    run_tiny(model, num_iter=20, trace=trace)  # more iterations than tokens: the clamp keeps one per step
    revealed = [int(trace.values[f"iter{k}.mask_to_pred"][0].sum()) for k in range(20)]
    assert sum(revealed) == 16 and all(r <= 1 for r in revealed[:-1])


def test_unknown_cfg_schedule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown cfg schedule"):
        run_tiny(tiny_mar(), cfg_schedule="cosine")
