"""Reward search across PixelFlow's cascade: settings, the budget plan, and the sampler that runs it per image.

Why across the cascade: a PixelFlow image's layout (what is where, how many objects) is fixed in the low-resolution
stages; the final stage starts from the upsampled previous stage at signal share 0.6 and can only polish it. A search
confined to the final stage therefore cannot change what the picture shows. Here particles live through every stage
(:mod:`.search_walk`), and the methods of :mod:`.search_methods` select among them from ``first_stage`` on.

The budget ``max_nfe`` counts model calls per image over the whole cascade (one per particle and step; a CFG pair is
one call), so ``k x`` the plain NFE (``sum(steps)``) compares a search with ``k`` plain images. How each method
spends it is in :mod:`.search_methods`; :func:`cascade_plan` says, before any model call, what a budget buys or why
it is too small.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..common import Callback, Trace
from ..flow_search.core import RewardFn
from ..flow_search.settings import METHODS
from . import defaults
from .cascade import entry_point, noised_entry, stage_resolution
from .noise import PixelFlowNoise, SeededCascadeSearchNoise
from .schedule import CascadeSchedule
from .search_methods import SEARCH_METHODS, CascadePlan
from .search_walk import CascadeWalk, RowVelocity, TwinNoise, WalkStep


@dataclass(frozen=True)
class CascadeSearchSettings:
    """What to search and how; validated on construction (the model-dependent checks are in :func:`cascade_plan`)."""

    method: str = defaults.SEARCH_METHOD
    max_nfe: int = defaults.SEARCH_MAX_NFE  # model calls per image, all stages
    first_stage: int = defaults.SEARCH_FIRST_STAGE  # selection starts at this stage's first step
    diffusion_norm: float = defaults.SEARCH_DIFFUSION_NORM  # SDE moves: g = norm sigma^2
    particles: int = 0  # best_of_n / smc: 0 = as many as the budget allows
    chains: int = 2  # svdd chains; rbf chains and search_over_paths paths at most (fewer where the budget is small)
    candidates: int = 0  # svdd proposals per step, search_over_paths copies per round; 0 = from the budget / 2
    init_particles: int = 4  # rbf particles per chain before the first scored step (at most, as chains)
    smc_lambda: float = 0.1
    ess_threshold: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown search method {self.method!r}; choose one of {', '.join(METHODS)}")
        counts = {"max_nfe": (self.max_nfe, 1), "first_stage": (self.first_stage, 0),
                  "particles": (self.particles, 0), "chains": (self.chains, 1), "candidates": (self.candidates, 0),
                  "init_particles": (self.init_particles, 1)}
        for name, (value, least) in counts.items():
            if int(value) != value or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value}")
        if not self.diffusion_norm > 0:
            raise ValueError(f"diffusion_norm must be > 0, got {self.diffusion_norm}")
        if not self.smc_lambda > 0:
            raise ValueError(f"smc_lambda must be > 0, got {self.smc_lambda}")
        if not 0.0 <= self.ess_threshold <= 1.0:
            raise ValueError(f"ess_threshold must be in [0, 1], got {self.ess_threshold}")


def cascade_plan(settings: CascadeSearchSettings, steps: int, first_scored: int) -> CascadePlan:
    """The counts for a walk of ``steps`` steps whose scoring starts at step ``first_scored``; ``ValueError`` naming
    the least budget when ``max_nfe`` buys no choice."""
    method, budget, last = settings.method, settings.max_nfe, steps - 1
    base = dict(method=method, steps=steps, first_scored=first_scored, smc_lambda=settings.smc_lambda,
                ess_threshold=settings.ess_threshold, budget=budget)

    def need(least: int, what: str) -> None:
        if budget < least:
            raise ValueError(f"search_max_nfe {budget} is too small for {method} over these {steps} steps: {what} "
                             f"needs {least} model calls per image; raise it (the plain image costs {steps})")

    if method in ("best_of_n", "smc"):
        count = settings.particles or budget // steps
        need(max(count, 2) * steps, f"{max(count, 2)} particles")
        return CascadePlan(particles=count, **base)
    chains = settings.chains
    if method == "svdd":
        if first_scored >= last:
            raise ValueError("svdd needs at least one scored step before the last; lower first_stage")
        fixed, scored = chains * (first_scored + 1), chains * (last - first_scored)
        copies = settings.candidates or (budget - fixed) // scored
        need(fixed + scored * max(copies, 2), f"{chains} chain(s) x {max(copies, 2)} proposals per step")
        return CascadePlan(particles=chains, candidates=copies, **base)
    if method == "rbf":
        if first_scored >= last:
            raise ValueError("rbf needs at least one scored step before the last; lower first_stage")
        def least(count: int, init: int) -> int:  # pools, one proposal per chain and step, one to choose from
            return count * init * (first_scored + 1) + count * (last - first_scored) + 1

        shapes = [(count, init) for init in range(settings.init_particles, 0, -1) for count in range(chains, 0, -1)]
        chains, init = next((shape for shape in shapes if least(*shape) <= budget), (1, 1))  # fewer if small
        need(least(chains, init), f"{chains} chain(s) of {init} particle(s) and one proposal per step, plus one to "
             "choose from")
        return CascadePlan(particles=chains, init_particles=init, **base)
    cost = steps - first_scored
    paths = max(1, min(chains, (budget - cost) // steps))  # fewer paths where the budget buys no re-run of each
    need(paths * steps + cost, f"{paths} path(s) and one re-run of {cost} steps")
    return CascadePlan(particles=paths, candidates=settings.candidates or 2, **base)


@dataclass
class CascadeSearchResult:
    """The searched images ``[B, C, size, size]`` (pixel units), with each image's reward and NFE spent."""

    pixels: Tensor
    rewards: list[float] = field(default_factory=list)
    nfe: list[int] = field(default_factory=list)


def walk_steps(schedule: CascadeSchedule, steps: Sequence[int], shift: float, entry: tuple[int, int]
               ) -> list[WalkStep]:
    """The cascade's Euler steps from ``entry`` ``(stage, step)`` to the end."""
    walk = []
    for stage in range(entry[0], schedule.num_stages):
        timesteps, t = schedule.stage_grid(stage, steps[stage], shift)
        t32 = t.float()  # the plain sampler steps by float32 differences
        start_t, span = schedule.start_t[stage], schedule.end_t[stage] - schedule.start_t[stage]
        first = entry[1] if stage == entry[0] else 0
        for k in range(first, len(timesteps)):
            walk.append(WalkStep(stage=stage, t=t[k].item(), timestep=timesteps[k], dt=t32[k + 1] - t32[k],
                                 sigma=1.0 - (start_t + t[k].item() * span),
                                 sigma_next=1.0 - (start_t + t[k + 1].item() * span), span=span,
                                 last_in_stage=k == len(timesteps) - 1))
    return walk


def first_scored_step(walk: Sequence[WalkStep], first_stage: int, num_stages: int) -> int:
    if first_stage >= num_stages:
        raise ValueError(f"search first_stage {first_stage} does not exist: this model has {num_stages} stages "
                         f"(0 to {num_stages - 1})")
    return next((index for index, step in enumerate(walk) if step.stage >= first_stage), len(walk) - 1)


def plan_for(settings: CascadeSearchSettings, schedule: CascadeSchedule, steps: Sequence[int], shift: float,
             entry: tuple[int, int] = (0, 0)) -> CascadePlan:
    """The plan of a search over the cascade entered at ``entry`` (raises before any model call when impossible)."""
    return walk_and_plan(settings, schedule, steps, shift, entry)[1]


def walk_and_plan(settings: CascadeSearchSettings, schedule: CascadeSchedule, steps: Sequence[int], shift: float,
                  entry: tuple[int, int]) -> tuple[list[WalkStep], CascadePlan]:
    walk = walk_steps(schedule, steps, shift, entry)
    return walk, cascade_plan(settings, len(walk), first_scored_step(walk, settings.first_stage, schedule.num_stages))


def search_cascade(
    velocity: RowVelocity,
    schedule: CascadeSchedule,
    settings: CascadeSearchSettings,
    reward: RewardFn,
    *,
    batch: int,
    size: int,
    steps: Sequence[int],
    shift: float,
    noise: PixelFlowNoise,
    search_noise: SeededCascadeSearchNoise,
    device: torch.device,
    channels: int = 3,
    image: Tensor | None = None,
    strength: float = 1.0,
    callback: Callback | None = None,
    traces: Sequence[Trace] | None = None,
) -> CascadeSearchResult:
    """Search each image of the batch in turn; the arguments are :func:`.cascade.sample_cascade`'s plus the search's.

    ``noise`` is drawn exactly as plain sampling draws it (start noise, then each stage's block noise), so each
    search's first particle is its plain twin; ``reward`` maps IMAGE ``[N, size, size, C]`` to ``[N]``; ``traces``
    (one per image) receive one row per search step. ``callback(done, total, preview)`` counts NFE over the batch.
    """
    stages = schedule.num_stages
    entry = (0, 0) if image is None else entry_point(schedule, steps, shift, strength)
    if entry[0] == stages:
        return CascadeSearchResult(image.float().to(device))
    walk, plan = walk_and_plan(settings, schedule, steps, shift, entry)
    resolution = stage_resolution(size, entry[0], stages)
    start_noise = noise.gaussian((batch, channels, resolution, resolution)).to(device)
    blocks = {}  # drawn in the plain sampler's order, after the start noise
    for stage in range(entry[0] + 1, stages):
        side = stage_resolution(size, stage, stages)
        blocks[stage] = noise.block(stage, (batch, channels, side, side)).to(device)
    result = CascadeSearchResult(torch.empty(0))
    outputs = []
    for item in range(batch):
        entry_state = _entry(image, item, schedule, entry, walk[0].t, device)

        def progress(done: int, total: int, preview: Tensor | None, item: int = item) -> None:
            if callback is not None:
                callback(item * total + done, batch * total, preview)

        twin = TwinNoise(start_noise[item:item + 1], {stage: b[item:item + 1] for stage, b in blocks.items()})
        search = CascadeWalk(velocity, item, schedule, walk, size=size, reward=reward, budget=plan.budget, twin=twin,
                             entry=entry_state, noise=search_noise, diffusion_norm=settings.diffusion_norm,
                             callback=progress, trace=traces[item] if traces is not None else None)
        pixels, best = SEARCH_METHODS[plan.method](search, plan)
        if not torch.isfinite(pixels).all():
            raise FloatingPointError("the search produced NaN or infinite values: check the model's weights and "
                                     "dtype, cfg and shift")
        outputs.append(pixels)
        result.rewards.append(best)
        result.nfe.append(search.nfe)
    result.pixels = torch.cat(outputs)
    return result


def _entry(image: Tensor | None, item: int, schedule: CascadeSchedule, entry: tuple[int, int], local_t: float,
           device: torch.device) -> Callable[[Tensor], Tensor]:
    """Start noise -> the walk's first states: the noise itself, or the image mixed in as image-to-image enters."""
    if image is None or entry == (0, 0):
        return lambda start: start
    clean = image[item:item + 1].float().to(device)
    return lambda start: noised_entry(clean.expand(start.shape[0], -1, -1, -1), schedule, entry[0], local_t, start)
