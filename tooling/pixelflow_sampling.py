"""PixelFlow sampling shared by ``bench/quality.py`` and ``demo.py``: the built-in shapes models sampled at the
sampler node's defaults (Euler, 10 steps per stage, cfg 4; ``train/pixelflow_eval.py``), one seed per sample, with
every guided velocity evaluation counted.

Flow search runs the pack's own ``search_stage_solver`` in the cascade's final stage with the shape-count reward
(squared_error mode), seeded as the sampler node seeds it (``seed ^ SEARCH_SEED_SALT``). At a budget of ``k`` times
the plain NFE (``stages x 10``) every method spends exactly ``k x plain`` per sample: the lower stages' Euler calls
plus the searched stage's ``max_nfe``, its finishing ODE included. Budgets are matched exactly because unequal
spending would confound the comparison; the settings are chosen per method and budget as follows.

- Best-of-N, SMC and RBF keep the paper's VP-SDE proposals and take the (search steps, finishing steps) pair
  closest to the defaults (10, 10), ranked by ``(min(steps, finish), steps, finish)``, whose run spends exactly the
  budget; Best-of-N and SMC also need at least 2 particles. For the 2-stage t2i model (final budgets 10, 70 and 150
  NFE at 1x, 4x, 8x): Best-of-N / SMC 4 steps, 4 finishing, 2 particles; 10, 7, 7 particles; 8, 10, 20 particles.
- RBF (2 chains) stops one proposal round short of ``max_nfe`` (the official ``nfe + B >= max_nfe`` test), so its
  ``max_nfe`` is raised by the least amount (at most the chain count) that makes it spend exactly the budget:
  4 steps + 4 finishing with max_nfe 12 at 1x, 10 + 10 with 71 at 4x, 10 + 10 with 151 at 8x.
- Search-over-Paths follows ``bench/flow_search_toy.py``: the model's linear path with ODE proposals. It finishes at
  sigma 0 by itself, so the budget is ``ODE sub-steps x (1 + paths x copies)`` (one round from the final stage's
  start); it takes the most sub-steps (up to 10, the plain stage's step count) with 2 paths, then 1, and at least 2
  candidates: 2 sub-steps x 2 paths x 2 copies at 1x, 10 x 2 x 3 at 4x, 10 x 2 x 7 at 8x.

Every choice is checked by a dry run of the real search (a zero model costs nothing and spends the same NFE), and
the NFE actually spent on each sample is counted again while it is generated and written to the manifest.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..models.flan_t5 import T5TextEncoder, load_t5_encoder
from ..models.pixelflow import PixelFlowModel
from ..models.pixelflow_release import load_pixelflow
from ..models.rewards.shapes_count import ShapesCountReward
from ..samplers.flow_search.noise import SeededFlowSearchNoise
from ..samplers.flow_search.run import run_search
from ..samplers.flow_search.settings import SearchSettings, search_plan
from ..samplers.pixelflow.defaults import SEARCH_SEED_SALT
from ..samplers.pixelflow.defaults import STEPS_PER_STAGE
from ..samplers.pixelflow.guidance import ClassCondition
from ..samplers.pixelflow.schedule import CascadeSchedule, cascade_schedule
from ..samplers.pixelflow.search import search_stage_solver
from ..samplers.pixelflow.stage import StageProblem, StageSolver, euler_stage
from .pixelflow_eval import sample_cascade_images, sample_prompts

from .report import quantise

BUILTIN = Path(__file__).resolve().parents[1] / "builtin"

SEARCH_METHODS = {"bon": "best_of_n", "smc": "smc", "sop": "search_over_paths", "rbf": "rbf"}
METHOD_BASE = {"sop": {"interpolant": "linear", "sde": False}}  # as bench/flow_search_toy.py runs it
MAX_STEPS = 10  # the sampler's steps per stage and the search's default steps / finishing steps
CHAINS = 2  # rbf chains, search_over_paths paths (the paper's B)


# ------------------------------------------------------------------------------------------------ models


def load_model(path: Path) -> tuple[PixelFlowModel, CascadeSchedule]:
    """A PixelFlow release and its cascade schedule; a clear error when the file is missing."""
    if not path.is_file():
        raise SystemExit(f"no PixelFlow model at {path}: train the built-in model (train/) or pass its path")
    model, release, _ = load_pixelflow(path)
    return model, cascade_schedule(release.num_train_timesteps, release.num_stages)


def load_encoder(folder: Path) -> T5TextEncoder:
    if not folder.is_dir():
        raise SystemExit(f"no text encoder folder at {folder}: train the built-in model (train/) or pass its path")
    return load_t5_encoder(folder)


# ------------------------------------------------------------------------------------------ NFE counting


class CountingVelocity:
    """A stage velocity that counts, per batch item, the latents it evaluates (one NFE each, CFG pair included).

    Why a wrapper: the search evaluates many particles of one item through ``rows([item] * n)``, so counting the
    rows each call carries, attributed to the items they belong to, gives the NFE actually spent per sample.
    """

    def __init__(self, velocity: Callable, counts: list[int], items: Sequence[int]) -> None:
        self.velocity, self.counts, self.items = velocity, counts, list(items)

    def __call__(self, x: Tensor, timestep: Tensor | float, stage: int) -> Tensor:
        if x.shape[0] != len(self.items):
            raise ValueError(f"counting velocity for {len(self.items)} rows got a batch of {x.shape[0]}")
        for item in self.items:
            self.counts[item] += 1
        return self.velocity(x, timestep, stage)

    def rows(self, rows: Sequence[int]) -> CountingVelocity:
        return CountingVelocity(self.velocity.rows(rows), self.counts, [self.items[row] for row in rows])


def counted(solver: StageSolver, counts: list[int]) -> StageSolver:
    """``solver`` with its stage velocity counted into ``counts`` (one entry per batch item)."""

    def solve(problem: StageProblem) -> Tensor:
        velocity = CountingVelocity(problem.velocity, counts, range(problem.x.shape[0]))
        return solver(dataclasses.replace(problem, velocity=velocity))

    return solve


# ----------------------------------------------------------------------------------------------- sampling


def plain_nfe(schedule: CascadeSchedule) -> int:
    return schedule.num_stages * STEPS_PER_STAGE


def final_budget(schedule: CascadeSchedule, multiplier: int) -> int:
    """The searched stage's ``max_nfe`` target at ``multiplier`` x the plain NFE: the lower stages keep their Euler
    calls, so the final stage gets the rest of the per-sample budget."""
    return multiplier * plain_nfe(schedule) - (schedule.num_stages - 1) * STEPS_PER_STAGE


def final_stage_sigma(schedule: CascadeSchedule) -> float:
    """Flow sigma where the final stage starts: the search's ``sigma_max``."""
    return 1.0 - schedule.start_t[-1]


def sample_class(model: PixelFlowModel, schedule: CascadeSchedule, label: int, seed: int) -> tuple[Tensor, int]:
    """One quantised image ``[32, 32, 3]`` of class ``label`` (batch 1, so ``seed`` alone reproduces it) and its NFE."""
    counts = [0]
    condition = ClassCondition(torch.tensor([label]), model.config.num_classes)
    solvers = [counted(euler_stage, counts)] * schedule.num_stages
    images = sample_cascade_images(model, schedule, condition, seed, solvers)
    return quantise(images)[0], counts[0]


def sample_caption(model: PixelFlowModel, encoder: T5TextEncoder, schedule: CascadeSchedule, caption: str, seed: int,
                   search: SearchSettings | None = None) -> tuple[Tensor, int]:
    """One quantised image ``[32, 32, 3]`` for ``caption`` (plain, or with ``search`` in the final stage scored by
    the shape-count reward) and the NFE it took."""
    counts = [0]
    final: StageSolver = euler_stage
    if search is not None:
        reward = ShapesCountReward("squared_error")
        final = search_stage_solver(search, lambda images: reward.score(images, caption), schedule,
                                    SeededFlowSearchNoise(seed ^ SEARCH_SEED_SALT))
    solvers = [counted(euler_stage, counts)] * (schedule.num_stages - 1) + [counted(final, counts)]
    images = sample_prompts(model, encoder, schedule, [caption], seed, solvers)
    return quantise(images)[0], counts[0]


# ------------------------------------------------------------------------------------- search per budget


def dry_run_nfe(settings: SearchSettings, sigma_max: float) -> int:
    """NFE the search spends with ``settings`` from ``sigma_max``: no search's spending depends on the model's or
    the reward's values, so a zero model on a tiny state gives the exact count for free."""
    shape = (3, 2, 2)
    result = run_search(lambda x, sigma: torch.zeros_like(x), lambda x0: torch.zeros(x0.shape[0]), shape, settings,
                        SeededFlowSearchNoise(0), first_latent=torch.zeros(1, *shape), sigma_max=sigma_max)
    return result.nfe


def candidate_settings(method: str, budget: int) -> list[SearchSettings]:
    """Settings for ``method`` at a final-stage ``budget``, best first (see the module docstring)."""
    base = dict(method=SEARCH_METHODS[method], **METHOD_BASE.get(method, {}))
    if method == "sop":
        return [SearchSettings(**base, max_nfe=budget, sop_ode_steps=sub, chains=paths)
                for sub in range(MAX_STEPS, 0, -1) for paths in (CHAINS, 1)]
    pairs = sorted(itertools.product(range(2, MAX_STEPS + 1), repeat=2), key=lambda p: (min(p), *p), reverse=True)
    extras = range(CHAINS + 1) if method == "rbf" else range(1)
    return [SearchSettings(**base, max_nfe=budget + extra, steps=steps, finish_steps=finish, chains=CHAINS)
            for steps, finish in pairs for extra in extras]


def is_search(settings: SearchSettings, sigma_max: float) -> bool:
    """A valid plan with something to choose between (at least 2 particles or candidates)."""
    try:
        plan = search_plan(settings, sigma_max)
    except ValueError:
        return False
    choices = {"best_of_n": plan.particles, "smc": plan.particles, "rbf": plan.particles,
               "search_over_paths": plan.rounds * plan.particles * plan.candidates}
    return choices[settings.method] >= 2


def search_settings(method: str, budget: int, sigma_max: float) -> SearchSettings:
    """The first candidate that is a real search and spends exactly ``budget`` NFE in the final stage."""
    for settings in candidate_settings(method, budget):
        if is_search(settings, sigma_max) and dry_run_nfe(settings, sigma_max) == budget:
            return settings
    raise ValueError(f"no {method} settings spend exactly {budget} NFE in the final stage; choose another multiplier")


def describe(settings: SearchSettings, sigma_max: float) -> str:
    """The counts a run uses, for the summary."""
    plan = search_plan(settings, sigma_max)
    if settings.method == "search_over_paths":
        return (f"linear ODE, {settings.sop_ode_steps} sub-steps, {plan.particles} path(s) x {plan.candidates} "
                f"copies, {plan.rounds} round(s)")
    counts = {"best_of_n": f"{plan.particles} particles", "smc": f"{plan.particles} particles",
              "rbf": f"{plan.particles} chains, quota {plan.quota}, max_nfe {settings.max_nfe}"}[settings.method]
    return f"VP-SDE, {settings.steps} steps + {settings.finish_steps} finishing, {counts}"


def add_model_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The model paths, defaulting to the built-in models (shared with ``demo.py``)."""
    parser.add_argument("--c2i", type=Path, default=BUILTIN / "pixelflow" / "shapes-c2i" / "model.safetensors",
                        help="class-to-image model.safetensors (config.yaml beside it)")
    parser.add_argument("--t2i", type=Path, default=BUILTIN / "pixelflow" / "shapes-t2i" / "model.safetensors",
                        help="text-to-image model.safetensors (config.yaml beside it)")
    parser.add_argument("--text-encoder", type=Path, default=BUILTIN / "text_encoders" / "shapes-t5",
                        help="the tiny T5 folder")
