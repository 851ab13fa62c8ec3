"""Training of the built-in PixelFlow models (class-to-image and text-to-image) on the shared loop
(:mod:`.loop`), and saving them in the official release layout.

A :class:`PixelFlowTask` says what differs between the two: which modules train (the PixelFlow transformer, plus the
tiny text encoder for text-to-image), what each world image is labelled with (its class or its caption), and how
labels become the model's conditioning. The loss draws the stages, timesteps, noise and label dropout from the
loop's generator.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file
from torch import Tensor, nn

from ..models.pixelflow import PixelFlowModel
from ..samplers.pixelflow.schedule import CascadeSchedule
from ..tooling.world import ShapesSample
from .loop import Loss, Save, Snapshot, TrainResult, TrainSettings, run as run_loop, train_modules
from .pixelflow_objective import flow_loss, training_batches

NUM_TRAIN_TIMESTEPS = 1000


@dataclass(frozen=True)
class PixelFlowTask:
    """What one built-in model trains: ``build()`` makes the trainable modules (a ``ModuleDict`` whose
    ``"pixelflow"`` entry is the transformer; called right after the global RNG is seeded), ``label`` gives a world
    image's label, ``null_label`` is the label dropped to for guidance, and ``condition(modules, labels)`` turns
    labels ``[b]`` into the transformer's conditioning keywords."""

    build: Callable[[], nn.ModuleDict]
    label: Callable[[ShapesSample], int]
    null_label: int
    condition: Callable[[nn.ModuleDict, Tensor], dict[str, Tensor]]


def cascade_loss(task: PixelFlowTask, schedule: CascadeSchedule) -> Loss:
    """The loop's loss: PixelFlow's flow-matching objective over the cascade's stages."""

    def loss(modules: nn.ModuleDict, images: Tensor, samples: list[ShapesSample],
             generator: torch.Generator) -> Tensor:
        labels = torch.tensor([task.label(sample) for sample in samples])
        batches = training_batches(images, labels, schedule, task.null_label, generator)
        return flow_loss(modules["pixelflow"], batches, lambda chosen: task.condition(modules, chosen))

    return loss


def train(task: PixelFlowTask, schedule: CascadeSchedule, *, seed: int, steps: int | None = None,
          minutes: float | None = None, settings: TrainSettings = TrainSettings(),
          log: Callable[[str], None] = print, snapshot: Snapshot | None = None,
          snapshot_every: int = 0) -> TrainResult:
    """Train ``task`` on the cascade ``schedule`` (the options are :func:`.loop.train_modules`'s)."""
    return train_modules(task.build, cascade_loss(task, schedule), seed=seed, steps=steps, minutes=minutes,
                         settings=settings, log=log, snapshot=snapshot, snapshot_every=snapshot_every)


def run(task: PixelFlowTask, schedule: CascadeSchedule, args: argparse.Namespace, title: str,
        save: Save) -> TrainResult:
    """Train ``task`` as the command line (:func:`.loop.run_arguments`) says and save its EMA weights."""
    return run_loop(task.build, cascade_loss(task, schedule), args, f"{title}, {schedule.num_stages} stages", save)


def save_release(model: PixelFlowModel, schedule: CascadeSchedule, out: Path, *, resolution: int,
                 provenance: dict) -> Path:
    """Write ``model.safetensors`` and the official ``config.yaml`` into ``out``; returns the weights' path."""
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "model.safetensors"
    save_file({name: value.contiguous() for name, value in model.state_dict().items()}, str(weights))
    config = {
        "model": {"target": "pixelflow.model.PixelFlowModel", "params": asdict(model.config)},
        "scheduler": {"num_train_timesteps": schedule.num_train_timesteps, "num_stages": schedule.num_stages},
        "data": {"resolution": resolution},
        "training": provenance,  # ignored by loaders: how to reproduce these weights
    }
    (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return weights
