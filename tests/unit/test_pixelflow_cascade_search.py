"""Reward search across PixelFlow's cascade: exact budgets for every method and first stage, the plain twin among
the candidates, what the reward is shown, stage changes with per-particle noise, refusals, and the sampler node's
search (trace, determinism, budget errors before any model call)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import SimpleNamespace

import pytest
import torch
from support.tiny_pixelflow import C2I, load, sample, write_tiny

from flowar.samplers.flow_search.settings import METHODS
from flowar.samplers.pixelflow.noise import SeededCascadeSearchNoise, SeededPixelFlowNoise
from flowar.samplers.pixelflow.schedule import cascade_schedule
from flowar.samplers.pixelflow.search import CascadeSearchSettings, plan_for, search_cascade
from flowar.samplers.pixelflow.cascade import sample_cascade
from flowar.samplers.pixelflow.stage import euler_stage

SCHEDULE = cascade_schedule(1000, 4)
STEPS = [3, 3, 3, 3]  # plain NFE 12
SIZE = 16


class FieldVelocity:
    """``dx/dt = -x / 4`` (a state-dependent field, so particles that differ stay different); counts the rows it
    evaluates per stage and checks the conditioning rows match the batch."""

    def __init__(self, counts: dict | None = None, picked: Sequence[int] = (0,)) -> None:
        self.counts = counts if counts is not None else {}
        self.picked = list(picked)

    def rows(self, rows: Sequence[int]) -> FieldVelocity:
        return FieldVelocity(self.counts, rows)

    def __call__(self, x: torch.Tensor, timestep, stage: int) -> torch.Tensor:
        assert x.shape[0] == len(self.picked)
        self.counts[stage] = self.counts.get(stage, 0) + x.shape[0]
        return -0.25 * x


def brightness(images: torch.Tensor) -> torch.Tensor:
    return images.mean(dim=(1, 2, 3))


def search(settings: CascadeSearchSettings, reward=brightness, velocity=None, seed: int = 0, **kwargs):
    return search_cascade(velocity or FieldVelocity(), SCHEDULE, settings, reward, batch=kwargs.pop("batch", 1),
                          size=SIZE, steps=STEPS, shift=1.0, noise=SeededPixelFlowNoise(seed),
                          search_noise=SeededCascadeSearchNoise(seed + 1), device=torch.device("cpu"), **kwargs)


def plain(seed: int = 0) -> torch.Tensor:
    return sample_cascade(FieldVelocity(), SCHEDULE, batch=1, size=SIZE, steps=STEPS, shift=1.0,
                          noise=SeededPixelFlowNoise(seed), solvers=[euler_stage] * 4, device=torch.device("cpu"))


@pytest.mark.parametrize("method", ("best_of_n", "smc", "rbf", "search_over_paths"))
@pytest.mark.parametrize("first_stage", (0, 1, 2, 3))
@pytest.mark.parametrize("multiplier", (2, 4, 8))
def test_every_method_spends_exactly_its_budget(method: str, first_stage: int, multiplier: int) -> None:
    """At k x the plain NFE every method spends exactly k x 12 model calls, wherever its selection starts."""
    counts: dict = {}
    settings = CascadeSearchSettings(method=method, max_nfe=12 * multiplier, first_stage=first_stage)
    result = search(settings, velocity=FieldVelocity(counts))
    assert result.nfe == [12 * multiplier] == [sum(counts.values())]
    assert torch.isfinite(result.pixels).all() and result.pixels.shape == (1, 3, SIZE, SIZE)
    assert set(counts) == {0, 1, 2, 3}  # every stage was walked


def test_svdd_spends_at_most_its_budget_and_the_plan_says_how_much() -> None:
    counts: dict = {}
    settings = CascadeSearchSettings(method="svdd", max_nfe=60, first_stage=2)
    plan = plan_for(settings, SCHEDULE, STEPS, 1.0)
    result = search(settings, velocity=FieldVelocity(counts))
    spent = plan.particles * (plan.first_scored + 1) + plan.particles * plan.candidates * (11 - plan.first_scored)
    assert result.nfe == [spent] and spent <= 60 and plan.candidates >= 2


def test_best_of_n_includes_the_plain_twin_and_picks_by_the_reward() -> None:
    """Particle 0 draws the plain run's noise (start and every stage change), so the plain image is a candidate; the
    output is the candidate the reward likes best."""
    finals = []

    def recording(images: torch.Tensor) -> torch.Tensor:
        finals.append(images)
        return brightness(images)

    result = search(CascadeSearchSettings(method="best_of_n", max_nfe=48), reward=recording)
    candidates = finals[-1]  # (4, 16, 16, 3): the final images
    twin = (plain() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)
    torch.testing.assert_close(candidates[:1], twin)
    best = brightness(candidates).argmax()
    torch.testing.assert_close((result.pixels / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1), candidates[best:best + 1])
    assert len({round(v, 6) for v in brightness(candidates).tolist()}) == 4  # particles differ


@pytest.mark.parametrize("method", METHODS)
def test_the_reward_sees_output_size_images_at_every_stage(method: str) -> None:
    shapes = []

    def recording(images: torch.Tensor) -> torch.Tensor:
        assert images.min() >= 0 and images.max() <= 1
        shapes.append(tuple(images.shape[1:]))
        return brightness(images)

    search(CascadeSearchSettings(method=method, max_nfe=96, first_stage=1), reward=recording)
    assert shapes and set(shapes) == {(SIZE, SIZE, 3)}


@pytest.mark.parametrize("method", METHODS)
def test_search_improves_on_the_plain_twin_for_an_easy_reward(method: str) -> None:
    """Brightness is easy to raise: each method's pick must beat the median of plain images of other seeds."""
    plain_rewards = sorted(brightness((plain(seed) / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)).item()
                           for seed in range(9))
    result = search(CascadeSearchSettings(method=method, max_nfe=96, first_stage=1))
    assert result.rewards[0] > plain_rewards[4]


def test_same_seed_same_image_and_batches_search_each_image() -> None:
    settings = CascadeSearchSettings(method="rbf", max_nfe=48)
    first, again = search(settings, seed=5, batch=2), search(settings, seed=5, batch=2)
    assert torch.equal(first.pixels, again.pixels) and first.nfe == [48, 48]
    assert not torch.equal(first.pixels[0], first.pixels[1])


def test_image_to_image_searches_from_the_entry_point() -> None:
    image = torch.zeros(1, 3, SIZE, SIZE)
    result = search(CascadeSearchSettings(method="best_of_n", max_nfe=24, first_stage=0), image=image, strength=0.5)
    assert result.pixels.shape == (1, 3, SIZE, SIZE) and torch.isfinite(result.pixels).all()
    assert result.nfe[0] <= 24


def test_refusals_name_the_input() -> None:
    with pytest.raises(ValueError, match="unknown search method 'beam'"):
        CascadeSearchSettings(method="beam")
    with pytest.raises(ValueError, match="first_stage 4 does not exist: this model has 4 stages"):
        plan_for(CascadeSearchSettings(first_stage=4), SCHEDULE, STEPS, 1.0)
    with pytest.raises(ValueError, match=r"search_max_nfe 20 is too small for best_of_n .* needs 24"):
        plan_for(CascadeSearchSettings(method="best_of_n", max_nfe=20), SCHEDULE, STEPS, 1.0)
    with pytest.raises(ValueError, match="the reward must return a tensor of shape"):
        search(CascadeSearchSettings(method="best_of_n", max_nfe=24), reward=lambda images: torch.zeros(1))


def test_sampler_node_searches_with_a_connected_reward_and_returns_the_trace(models_dir) -> None:
    seen = []

    def recording(images: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(images.shape))
        return brightness(images)

    model = load(write_tiny(models_dir, "tiny_c2i", C2I))
    reward = SimpleNamespace(name="brightness", score=recording, patchers=[])
    node_search = {"reward": reward, "search_method": "rbf", "search_max_nfe": 24, "search_steps": 2,
                   "search_first_stage": 1}
    image, trace = sample_with_trace(model, **node_search)
    assert image.shape == (2, 16, 16, 3) and torch.isfinite(image).all()
    assert seen and all(shape[1:] == (16, 16, 3) for shape in seen)
    rows = [json.loads(line) for line in trace.splitlines()]
    assert {row["item"] for row in rows} == {0, 1} and max(row["nfe"] for row in rows) == 24
    assert [row["phase"] for row in rows if row["item"] == 0][-1] == "select"
    assert {"stage", "step", "nfe", "best", "phase"} <= set(rows[-1])
    assert torch.equal(image, sample_with_trace(model, **node_search)[0])  # same seed, same images
    seen.clear()
    with pytest.raises(ValueError, match="too small for rbf"):
        sample(model, **{**node_search, "search_max_nfe": 5})
    assert not seen, "a budget error must come before any sampling"
    with pytest.raises(ValueError, match="solver to euler"):
        sample(model, **{**node_search, "solver": "dopri5"})


def test_sampler_node_sends_every_trace_row_of_every_image_as_an_event(models_dir, monkeypatch) -> None:
    sent = []
    monkeypatch.setattr("flowar.nodes.pixelflow.send_event", lambda event, data: sent.append((event, data)))
    model = load(write_tiny(models_dir, "tiny_c2i", C2I))
    reward = SimpleNamespace(name="brightness", score=brightness, patchers=[])
    _, trace = sample_with_trace(model, reward=reward, search_method="best_of_n", search_max_nfe=16, search_steps=2,
                                 unique_id="7")
    rows = [json.loads(line) for line in trace.splitlines()]
    assert [event for event, _ in sent] == ["flowar.search.trace"] * len(rows)
    assert [{"item": data["item"], **data["row"]} for _, data in sent] == rows
    assert {data["node"] for _, data in sent} == {"7"}


def sample_with_trace(model, **overrides) -> tuple[torch.Tensor, str]:
    from support.tiny_pixelflow import SAMPLER_DEFAULTS
    from flowar.nodes.pixelflow import FlowARPixelFlowSampler
    return FlowARPixelFlowSampler().sample(model, **{**SAMPLER_DEFAULTS, **overrides})
