"""Class accuracy of a class-to-image PixelFlow on the shapes world, sampled with the pack's own cascade sampler.

A sample is correct when the analyser finds 1 to 4 objects and every one has the requested shape and colour
(issue 8's measure). Sampling uses the sampler node's defaults: Euler, 10 steps per stage, shift 1, cfg 4 with
the official class ramp where the model has the 4 stages it is defined for, else the ``linear`` ramp (1 at the
first stage up to cfg at the last), since the official table has no entries for other stage counts.

Run from the repository root: ``python -m train.pixelflow_eval builtin/pixelflow/shapes-c2i --samples 240``.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ == "train":  # python -m train.pixelflow_eval, from the repository root
    from . import run_in_pack

    run_in_pack("pixelflow_eval")
    raise SystemExit

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.pixelflow import PixelFlowModel
from ..models.pixelflow_release import load_pixelflow
from ..models.shapes import CLASS_NAMES, COUNTS, SHAPES, class_parts
from ..models.shapes_analyser import analyse
from ..samplers.cascade import sample_cascade
from ..samplers.cascade_noise import SeededCascadeNoise
from ..samplers.cascade_stage import euler_stage
from ..samplers.pixelflow_guidance import OFFICIAL_CLASS_STAGE_WEIGHTS, ClassCondition, GuidedVelocity, \
    stage_guidance
from ..samplers.pixelflow_schedule import CascadeSchedule, cascade_schedule
from ..samplers.pixels import pixels_to_image

STEPS_PER_STAGE = 10
CFG = 4.0
SIZE = 32


@dataclass(frozen=True)
class Accuracy:
    """Share of correct samples overall and per shape, with the counts behind them."""

    correct: int
    total: int
    per_shape: dict[str, tuple[int, int]]  # shape -> (correct, total)

    @property
    def overall(self) -> float:
        return self.correct / self.total


def guidance_schedule(num_stages: int) -> str:
    """``official`` where it is defined (4 stages), else ``linear``."""
    return "official" if num_stages == len(OFFICIAL_CLASS_STAGE_WEIGHTS) else "linear"


def sample_classes(model: PixelFlowModel, schedule: CascadeSchedule, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """IMAGE ``[B, 32, 32, 3]`` in 0..1 for class ``labels`` ``[B]``, one seeded cascade run for the batch."""
    stages = schedule.num_stages
    guidance = stage_guidance(CFG, stages, guidance_schedule(stages), class_conditional=True)
    velocity = GuidedVelocity(model, ClassCondition(labels, model.config.num_classes), guidance,
                              patch_size=model.config.patch_size, head_dim=model.config.attention_head_dim,
                              use_cfg=True)
    with torch.no_grad():
        pixels = sample_cascade(velocity, schedule, batch=len(labels), size=SIZE, steps=[STEPS_PER_STAGE] * stages,
                                shift=1.0, noise=SeededCascadeNoise(seed, schedule.gamma),
                                solvers=[euler_stage] * stages, device=torch.device("cpu"))
    return pixels_to_image(pixels)


def score(images: torch.Tensor, labels: torch.Tensor) -> Accuracy:
    """Judge ``images`` ``[B, 32, 32, 3]`` against their requested classes ``labels`` ``[B]`` with the analyser."""
    per_shape = {shape: [0, 0] for shape in SHAPES}
    for objects, label in zip(analyse(images), labels.tolist()):
        shape, colour = class_parts(label)
        right = len(objects) in COUNTS and all(o.shape == shape and o.colour == colour for o in objects)
        per_shape[shape][0] += right
        per_shape[shape][1] += 1
    correct = sum(right for right, _ in per_shape.values())
    return Accuracy(correct, len(labels), {shape: (c, t) for shape, (c, t) in per_shape.items()})


def class_accuracy(model: PixelFlowModel, schedule: CascadeSchedule, *, samples: int, seed: int = 0,
                   batch: int = 24) -> Accuracy:
    """Sample ``samples`` images, classes in turn (0, 1, ..., 11, 0, ...), batch ``k`` with noise seed
    ``seed + k``, and score them."""
    labels = torch.arange(samples) % len(CLASS_NAMES)
    images = torch.cat([sample_classes(model, schedule, chunk, seed + k)
                        for k, chunk in enumerate(labels.split(batch))])
    return score(images, labels)


def format_accuracy(accuracy: Accuracy) -> str:
    shapes = ", ".join(f"{shape} {c / t:.0%} ({c}/{t})" for shape, (c, t) in accuracy.per_shape.items() if t)
    return f"class accuracy {accuracy.overall:.1%} ({accuracy.correct}/{accuracy.total}); {shapes}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder with model.safetensors and config.yaml")
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model, release, _ = load_pixelflow(args.folder / "model.safetensors")
    schedule = cascade_schedule(release.num_train_timesteps, release.num_stages)
    print(format_accuracy(class_accuracy(model, schedule, samples=args.samples, seed=args.seed)))


if __name__ == "__main__":
    main()
