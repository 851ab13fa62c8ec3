"""PixelFlow sampling shared by ``bench/quality.py`` and ``demo.py``: the built-in shapes models sampled at the
sampler node's defaults (Euler, 10 steps per stage, cfg 4; ``tooling/pixelflow_eval.py``), one seed per sample, with
every guided velocity evaluation counted.

Reward search is the sampler node's: :func:`..samplers.pixelflow.search.search_cascade` with the shape-count reward
(squared_error mode) at its default first stage, seeded as the node seeds it (``seed ^ SEARCH_SEED_SALT``). A budget
of ``k`` times the plain NFE (``stages x 10``) is the search's ``max_nfe``; every method spends exactly that at
``k >= 2`` (``k`` x the plain NFE is a multiple of the walk's length). The NFE actually spent on each sample is
counted again while it is drawn and written to the manifest.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..models.flan_t5 import T5TextEncoder, load_t5_encoder
from ..models.pixelflow import PixelFlowModel
from ..models.pixelflow_release import load_pixelflow
from ..models.rewards.shapes_count import ShapesCountReward
from ..samplers.pixelflow.defaults import SEARCH_SEED_SALT, STEPS_PER_STAGE
from ..samplers.pixelflow.guidance import ClassCondition, TextCondition
from ..samplers.pixelflow.noise import SeededCascadeSearchNoise, SeededPixelFlowNoise
from ..samplers.pixelflow.schedule import CascadeSchedule, cascade_schedule
from ..samplers.pixelflow.search import CascadeSearchSettings, plan_for, search_cascade
from ..samplers.pixelflow.stage import StageProblem, StageSolver, euler_stage
from ..samplers.pixels import pixels_to_image
from .pixelflow_eval import SIZE, guided_velocity, sample_cascade_images, text_condition

from .report import quantise

BUILTIN = Path(__file__).resolve().parents[1] / "builtin"

SEARCH_METHODS = {"bon": "best_of_n", "smc": "smc", "sop": "search_over_paths", "rbf": "rbf"}


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


def search_settings(method: str, multiplier: int, schedule: CascadeSchedule) -> CascadeSearchSettings:
    """The node's search of ``method`` (a key of :data:`SEARCH_METHODS`) at ``multiplier`` x the plain NFE."""
    return CascadeSearchSettings(method=SEARCH_METHODS[method], max_nfe=multiplier * plain_nfe(schedule))


def describe(settings: CascadeSearchSettings, schedule: CascadeSchedule) -> str:
    """The counts a run uses, for the summary."""
    plan = plan_for(settings, schedule, [STEPS_PER_STAGE] * schedule.num_stages, 1.0)
    counts = {"best_of_n": f"{plan.particles} particles", "smc": f"{plan.particles} particles (SDE)",
              "svdd": f"{plan.particles} chains x {plan.candidates} proposals",
              "rbf": f"{plan.particles} chains of best-of-{plan.init_particles} (SDE)",
              "search_over_paths": f"{plan.particles} paths, {plan.candidates} copies per round"}[settings.method]
    scored = "final images scored" if settings.method == "best_of_n" else f"scored from stage {settings.first_stage}"
    return f"{counts}, {scored}"


def sample_class(model: PixelFlowModel, schedule: CascadeSchedule, label: int, seed: int) -> tuple[Tensor, int]:
    """One quantised image ``[32, 32, 3]`` of class ``label`` (batch 1, so ``seed`` alone reproduces it) and its NFE."""
    counts = [0]
    condition = ClassCondition(torch.tensor([label]), model.config.num_classes)
    solvers = [counted(euler_stage, counts)] * schedule.num_stages
    images = sample_cascade_images(model, schedule, condition, seed, solvers)
    return quantise(images)[0], counts[0]


def sample_searched(model: PixelFlowModel, schedule: CascadeSchedule, condition: ClassCondition | TextCondition,
                    caption: str, seed: int, settings: CascadeSearchSettings) -> tuple[Tensor, int]:
    """One quantised image ``[32, 32, 3]`` searched for ``caption`` by the shape-count reward under ``condition``
    (a class or the caption's text), and the NFE counted while drawing it."""
    counts = [0]
    reward = ShapesCountReward("squared_error")
    velocity = CountingVelocity(guided_velocity(model, schedule, condition), counts, [0])
    with torch.no_grad():
        result = search_cascade(velocity, schedule, settings, lambda images: reward.score(images, caption), batch=1,
                                size=SIZE, steps=[STEPS_PER_STAGE] * schedule.num_stages, shift=1.0,
                                noise=SeededPixelFlowNoise(seed, schedule.gamma),
                                search_noise=SeededCascadeSearchNoise(seed ^ SEARCH_SEED_SALT),
                                device=torch.device("cpu"))
    return quantise(pixels_to_image(result.pixels))[0], counts[0]


def sample_count(model: PixelFlowModel, schedule: CascadeSchedule, label: int, caption: str, seed: int,
                 settings: CascadeSearchSettings | None) -> tuple[Tensor, int]:
    """The counting experiment: class ``label`` conditions the model, the reward (if ``settings``) asks for
    ``caption``'s count. Plain sampling is :func:`sample_class` (same seed, same noise as the search's twin)."""
    if settings is None:
        return sample_class(model, schedule, label, seed)
    condition = ClassCondition(torch.tensor([label]), model.config.num_classes)
    return sample_searched(model, schedule, condition, caption, seed, settings)


def sample_caption(model: PixelFlowModel, encoder: T5TextEncoder, schedule: CascadeSchedule, caption: str, seed: int,
                   settings: CascadeSearchSettings | None = None) -> tuple[Tensor, int]:
    """One quantised image ``[32, 32, 3]`` for ``caption`` (plain, or searched by the shape-count reward)."""
    condition = text_condition(encoder, [caption])
    if settings is not None:
        return sample_searched(model, schedule, condition, caption, seed, settings)
    counts = [0]
    solvers = [counted(euler_stage, counts)] * schedule.num_stages
    images = sample_cascade_images(model, schedule, condition, seed, solvers)
    return quantise(images)[0], counts[0]


def add_model_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The model paths, defaulting to the built-in models (shared with ``demo.py``)."""
    parser.add_argument("--c2i", type=Path, default=BUILTIN / "pixelflow" / "shapes-c2i" / "model.safetensors",
                        help="class-to-image model.safetensors (config.yaml beside it)")
    parser.add_argument("--t2i", type=Path, default=BUILTIN / "pixelflow" / "shapes-t2i" / "model.safetensors",
                        help="text-to-image model.safetensors (config.yaml beside it)")
    parser.add_argument("--text-encoder", type=Path, default=BUILTIN / "text_encoders" / "shapes-t5",
                        help="the tiny T5 folder")
