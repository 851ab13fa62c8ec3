"""Flow searches: full official runs replayed from their recorded draws (RBF, SVDD), then the behaviour every method
must have (NFE accounting, budget, finishing to sigma 0, keep-best, batching, seeds, errors) on a small toy mixture.

Loop cases are the flow_search cases whose ``config.json`` names a ``filtering_method``; call/iteration indices,
sizes and counts come from each case's tensor names and config.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import torch
from support.fixtures import case_params
from support.flow_search import (DRAW, ROLES, GaussianMixtureFlow, ReplayNoise, squared_distance_reward, toy_model,
                                 toy_reward)

from flowar.samplers.common import Trace
from flowar.samplers.flow_search.grid import exp_grid
from flowar.samplers.flow_search.noise import SeededFlowSearchNoise
from flowar.samplers.flow_search.run import run_search
from flowar.samplers.flow_search.settings import METHODS, SearchSettings, search_plan

EVENT = re.compile(r"^(?:call|iter)(\d+)\.ev(\d+)\.(\w+)\.(\w+)$")
LOOP_OUT = re.compile(r"^(?:call|iter)(\d+)\.out\.(\w+)$")
COUNTERS = {"step_counter": "step_counter", "budget_counter": "budget_counter", "max_budget": "quota",
            "t_curr": "counter"}  # official sample_dict / trainer field -> our trace name (must match exactly)
STATES = {"xts": "state", "model_pred": "velocity"}


def loop_cases() -> list:
    params = [p for p in case_params("flow_search") if p.values[0] is None or "filtering_method" in p.values[0].config]
    return params or [pytest.param(None, marks=pytest.mark.skip(reason="no flow_search loop cases"))]


def settings_from(config: dict) -> SearchSettings:
    """Our settings for an official run's config (the loops return the x0 prediction: finish 'official')."""
    assert config.get("time_schedule", "exp") == "exp", "only the exp time schedule is implemented"
    assert config.get("t_max", 1000) == 1000, "the official runs start at t_max = 1000"
    linear = config["convert_scheduler"] == "polynomial" and float(config.get("scheduler_n", 1.0)) == 1.0
    assert linear or config["convert_scheduler"] == "vp", config["convert_scheduler"]
    method = config["filtering_method"]
    counts = ({"chains": config["batch_size"], "init_particles": config["init_n_particles"]} if method == "rbf"
              else {"chains": config["batch_size"], "candidates": config["n_particles"]})
    return SearchSettings(method=method, max_nfe=config["max_nfe"], steps=config["max_steps"],
                          interpolant="linear" if linear else "vp", sde=config["sample_method"] == "sde",
                          diffusion=config["diffusion_coefficient"], diffusion_norm=config["diffusion_norm"],
                          finish="official", **counts)


def recorded_events(tensors: dict) -> dict[int, list[tuple[int, str, str]]]:
    """Per call/iteration: its events ``(index, kind, field)`` in execution order."""
    events = defaultdict(list)
    for key in tensors:
        if m := EVENT.match(key):
            events[int(m[1])].append((int(m[2]), m[3], m[4]))
    return {call: sorted(found) for call, found in events.items()}


def evaluated_calls(events: dict) -> list[int]:
    """Calls/iterations whose proposals were evaluated (a velocity event after the step): the ones we run."""
    kept = []
    for call, found in sorted(events.items()):
        steps = [index for index, kind, _ in found if kind == "step"]
        if steps and any(kind == "velocity" and index > steps[0] for index, kind, _ in found):
            kept.append(call)
    return kept


def event_key(tensors: dict, call: int, index: int, kind: str, field: str) -> str:
    return next(key for key in tensors if (m := EVENT.match(key)) and (int(m[1]), int(m[2]), m[3], m[4])
                == (call, index, kind, field))


@pytest.mark.parametrize("case", loop_cases())
def test_flow_search_official_run_replays_fixture(case) -> None:
    tensors, config = case.tensors, case.config
    tol = case.config["tolerances_float32"]
    settings = settings_from(config)
    shape = tuple(tensors["toy.reward_target"].shape)
    trace, noise = Trace(), ReplayNoise(tensors)
    result = run_search(toy_model(tensors, config), toy_reward(tensors, config), shape, settings, noise, trace=trace)

    def close(ours: torch.Tensor, key: str) -> None:
        expected = tensors[key]
        torch.testing.assert_close(ours.to(expected.dtype), expected, atol=tol["atol"], rtol=tol["rtol"], msg=key)

    events = recorded_events(tensors)
    calls = evaluated_calls(events)
    ours = sorted(int(m[1]) for key in trace.values if (m := re.match(r"^step(\d+)\.proposals$", key)))
    assert ours == calls, "we must evaluate exactly the official calls whose proposals were evaluated"
    rows = {row["step"]: row for row in trace.rows if row["phase"] == "search"}
    for call in calls:
        found = events[call]
        step_index = next(index for index, kind, _ in found if kind == "step")
        close(trace.values[f"step{call}.proposals"], event_key(tensors, call, step_index, "step", "out"))
        potentials = [index for index, kind, field in found if kind == "potential" and field == "rewards"]
        if f"step{call}.init.rewards" in trace.values:  # RBF's initial best-of-n, scored first
            initial = event_key(tensors, call, potentials[0], "potential", "rewards")
            close(trace.values[f"step{call}.init.rewards"], initial)
        close(trace.values[f"step{call}.rewards"], event_key(tensors, call, potentials[-1], "potential", "rewards"))
        outs = {m[2]: key for key in tensors if (m := LOOP_OUT.match(key)) and int(m[1]) == call}
        for official, name in COUNTERS.items():
            if official in outs:  # discrete decisions and the counter arithmetic: exact
                expected = tensors[outs[official]]
                assert torch.equal(trace.values[f"step{call}.{name}"], expected.reshape(-1)), f"call {call} {official}"
        for official, name in STATES.items():
            if official in outs:
                close(trace.values[f"step{call}.{name}"], outs[official])
        if "nfe" in outs:
            assert rows[call]["nfe"] == int(tensors[outs["nfe"]]), f"call {call} NFE"
        if "step_counter" not in outs:  # per-chain argmax picks: recover the official ones from the chosen states
            proposals = tensors[event_key(tensors, call, step_index, "step", "out")]
            picked = [int((proposals - state).flatten(1).abs().sum(1).argmin()) for state in tensors[outs["xts"]]]
            assert rows[call]["chosen"] == picked, f"iteration {call} picks"
    close(result.x0, "final.image")
    if "final.latest_reward" in tensors:
        assert result.reward == pytest.approx(tensors["final.latest_reward"].item(), abs=tol["atol"])
    needed = [key for key in tensors if (m := DRAW.match(key)) and (int(m[1]) in calls or m[3] == ROLES["initial"])]
    assert noise.used == len(needed), "the initial draw and the noise of every evaluated call, in order"


def fixed_grid_cases() -> list:
    """Loop cases recording the fixed grid of the particle searches (RBF steps its own counter instead)."""
    params = [p for p in loop_cases() if p.values[0] is not None and "schedule.timesteps" in p.values[0].tensors]
    return params or [pytest.param(None, marks=pytest.mark.skip(reason="no flow_search case records schedule.*"))]


@pytest.mark.parametrize("case", fixed_grid_cases())
def test_flow_search_fixed_grid_matches_fixture_schedule(case) -> None:
    tensors = case.tensors
    grid = exp_grid(case.config["max_steps"])
    torch.testing.assert_close(grid.times[:-1] * 1000.0, tensors["schedule.timesteps"], atol=1e-5, rtol=1e-6)
    torch.testing.assert_close(grid.steps * 1000.0, tensors["schedule.d_t"], atol=1e-4, rtol=1e-6)


# ------------------------------------------------------------------------------------------- behaviour on a toy

SHAPE = (4, 2)


def small_mixture() -> GaussianMixtureFlow:
    generator = torch.Generator().manual_seed(3)
    return GaussianMixtureFlow(torch.randn(3, 8, generator=generator) * 1.5, torch.tensor([0.0, -0.5, -1.0]), 0.3)


def favour_component(model: GaussianMixtureFlow, component: int):
    return squared_distance_reward(model.means[component].reshape(SHAPE), 10.0)


class Counting:
    """A denoiser wrapper that counts latents and remembers call sizes and sigmas."""

    def __init__(self, denoise) -> None:
        self.denoise, self.latents, self.sizes, self.sigmas = denoise, 0, [], []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] == sigma.shape[0] and sigma.dtype == torch.float32
        self.latents += x.shape[0]
        self.sizes.append(x.shape[0])
        self.sigmas.append(sigma.clone())
        return self.denoise(x, sigma)


SMALL = {"rbf": {"init_particles": 3}, "best_of_n": {}, "smc": {}, "svdd": {}, "search_over_paths": {}}


@pytest.mark.parametrize("method", METHODS)
def test_flow_search_counts_every_latent_once_and_stays_in_budget(method: str) -> None:
    model = small_mixture()
    settings = SearchSettings(method=method, max_nfe=80, steps=5, finish_steps=4, keep_best=True, **SMALL[method])
    counting, calls, trace = Counting(model), [], Trace()
    result = run_search(counting, favour_component(model, 2), SHAPE, settings, SeededFlowSearchNoise(0),
                        callback=lambda step, total, preview: calls.append((step, total, preview)), trace=trace)
    assert result.nfe == counting.latents <= settings.max_nfe
    assert result.x0.shape == (1, *SHAPE) and torch.isfinite(result.x0).all()
    finishing = [row for row in trace.rows if row["phase"] == "finish"]
    assert result.finish_nfe == len(finishing) <= settings.finish_steps - 1
    search_rows = [row for row in trace.rows if row["phase"] != "finish"]
    assert search_rows and all(a["nfe"] <= b["nfe"] for a, b in zip(search_rows, search_rows[1:]))
    assert trace.rows[-1]["nfe"] == result.nfe
    assert len(calls) >= len(search_rows) and all(total == settings.max_nfe for _, total, _ in calls)
    assert all(float(s.min()) > 0 for s in counting.sigmas), "the model is never queried at sigma 0"
    assert result.reward == pytest.approx(favour_component(model, 2)(result.x0).item())


def test_flow_search_plan_derives_counts_from_the_budget() -> None:
    paper = SearchSettings(method="rbf", finish="official")
    assert search_plan(paper).quota == 22  # released: floor((500 - 25 * 2) / (10 * 2))
    assert search_plan(SearchSettings(method="best_of_n", finish="official")).particles == 50  # paper: N = 50
    svdd = search_plan(SearchSettings(method="svdd", max_nfe=110, steps=5, finish_steps=11))
    assert (svdd.search_nfe, svdd.candidates) == (100, 12)  # 2 + 4 steps x 2 chains x 12 <= 100
    sop = search_plan(SearchSettings(method="search_over_paths", finish="official"))
    assert sop.rounds == 4 and sop.search_nfe == 500  # ceil(0.12 / 0.03) rounds, nothing reserved


@pytest.mark.parametrize(("overrides", "message"), [
    ({"steps": 1}, "steps must be an integer >= 2"),
    ({"method": "beam"}, "unknown method"),
    ({"max_nfe": 30}, "too small for rbf"),
    ({"method": "svdd", "max_nfe": 10, "steps": 10}, "too small for svdd"),
    ({"diffusion_norm": 0.0}, "diffusion_norm > 0"),
    ({"diffusion": "cubic"}, "unknown diffusion"),
    ({"method": "search_over_paths", "sop_forward": 0.9}, "sop_forward < sop_backward"),
    ({"ess_threshold": 2.0}, "ess_threshold"),
])
def test_flow_search_bad_settings_are_clear_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        search_plan(SearchSettings(**overrides))


def test_flow_search_bad_inputs_are_clear_errors() -> None:
    model, settings = small_mixture(), SearchSettings(method="best_of_n", max_nfe=20, steps=4)
    reward = favour_component(model, 0)
    with pytest.raises(ValueError, match="first_latent must have shape"):
        run_search(model, reward, SHAPE, settings, SeededFlowSearchNoise(0), first_latent=torch.zeros(2, *SHAPE))
    with pytest.raises(ValueError, match="needs first_latent"):
        run_search(model, reward, SHAPE, settings, SeededFlowSearchNoise(0), sigma_max=0.5)
    with pytest.raises(ValueError, match="reward must return a tensor of shape"):
        run_search(model, lambda x0: torch.zeros(1), SHAPE, settings, SeededFlowSearchNoise(0))
    with pytest.raises(FloatingPointError, match="NaN"):
        run_search(model, lambda x0: torch.full((x0.shape[0],), float("nan")), SHAPE, settings,
                   SeededFlowSearchNoise(0))


def test_flow_search_ode_finish_reaches_the_data_end() -> None:
    """One Gaussian: the flow ODE maps noise z to mean + std z exactly, so a fine search grid with a fine finish must
    land there (Euler, first order), while the official ending (the x0 prediction at the last searched time of a
    10-step grid) stays far from it."""
    mean = torch.linspace(-1, 1, 8)
    model = GaussianMixtureFlow(mean[None], torch.zeros(1), 0.5)
    z = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(1))
    exact = mean.reshape(1, *SHAPE) + 0.5 * z
    for interpolant in ("linear", "vp"):
        common = dict(method="best_of_n", particles=1, sde=False, interpolant=interpolant, max_nfe=400)
        fine = SearchSettings(**common, steps=100, finish_steps=100)
        finished = run_search(model, favour_component(model, 0), SHAPE, fine, SeededFlowSearchNoise(0),
                              first_latent=z)
        coarse = SearchSettings(**common, steps=10, finish="official")
        official = run_search(model, favour_component(model, 0), SHAPE, coarse, SeededFlowSearchNoise(0),
                              first_latent=z)
        assert (finished.x0 - exact).abs().max() < 0.05, interpolant
        assert (official.x0 - exact).abs().max() > 0.2, interpolant
        assert finished.finish_nfe == 99 and official.finish_nfe == 0


def test_flow_search_keep_best_returns_the_best_scored_candidate() -> None:
    model = small_mixture()
    trace = Trace()
    settings = SearchSettings(method="svdd", max_nfe=60, steps=4, candidates=4, finish="official", keep_best=True)
    result = run_search(model, favour_component(model, 1), SHAPE, settings, SeededFlowSearchNoise(4), trace=trace)
    assert result.reward == max(max(row["rewards"]) for row in trace.rows if row.get("rewards"))


def test_flow_search_batching_and_first_latent() -> None:
    model = small_mixture()
    first = torch.randn(1, *SHAPE, generator=torch.Generator().manual_seed(7))
    results = []
    for batch_size in (0, 3):
        counting = Counting(model)
        settings = SearchSettings(method="svdd", max_nfe=60, steps=4, candidates=4, batch_size=batch_size)
        results.append(run_search(counting, favour_component(model, 1), SHAPE, settings, SeededFlowSearchNoise(2),
                                  first_latent=first))
        assert max(counting.sizes) == (8 if batch_size == 0 else 3)  # 2 chains x 4 candidates per step
    torch.testing.assert_close(results[0].x0, results[1].x0)
    plain = SearchSettings(method="best_of_n", particles=1, max_nfe=20, steps=4, sde=False)
    a, b = (run_search(model, favour_component(model, 0), SHAPE, plain, SeededFlowSearchNoise(seed), first_latent=first)
            for seed in (0, 1))
    torch.testing.assert_close(a.x0, b.x0)  # the only particle starts from first_latent, whatever the seed


def test_flow_search_seeds_reproduce_and_differ() -> None:
    model, settings = small_mixture(), SearchSettings(method="rbf", max_nfe=60, steps=4, init_particles=3)
    runs = [run_search(model, favour_component(model, 0), SHAPE, settings, SeededFlowSearchNoise(seed)).x0
            for seed in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_flow_search_part_way_start_is_evaluated_once() -> None:
    model = small_mixture()
    start = 0.6 * model.means[0].reshape(1, *SHAPE) + 0.4 * torch.randn(1, *SHAPE, generator=torch.Generator())
    counting = Counting(model)
    settings = SearchSettings(method="best_of_n", particles=3, max_nfe=40, steps=4, finish_steps=3)
    result = run_search(counting, favour_component(model, 0), SHAPE, settings, SeededFlowSearchNoise(0),
                        first_latent=start, sigma_max=0.4)
    assert result.nfe == 1 + 3 * 3 + 2  # shared start once, 3 particles x 3 evaluated steps, finish
    assert float(counting.sigmas[0][0]) == pytest.approx(0.4, abs=1e-5)
    assert max(float(s.max()) for s in counting.sigmas) <= 0.4 + 1e-5


def test_flow_search_smc_resamples_by_weight() -> None:
    model = small_mixture()
    for threshold, resamples in ((1.0, True), (0.0, False)):
        trace = Trace()
        settings = SearchSettings(method="smc", particles=6, max_nfe=40, steps=4, ess_threshold=threshold)
        run_search(model, favour_component(model, 2), SHAPE, settings, SeededFlowSearchNoise(1), trace=trace)
        picks = [row["chosen"] for row in trace.rows if row["phase"] == "search"]
        assert any(p is not None for p in picks) == resamples
