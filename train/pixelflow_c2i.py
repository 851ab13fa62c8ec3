"""Train the built-in class-to-image PixelFlow on the shapes world and save it in the official release layout.

Run from the repository root: ``python -m train.pixelflow_c2i --out builtin/pixelflow/shapes-c2i --minutes 60
--seed 0`` (``--steps`` bounds the run by steps instead or as well; ``--eval N`` samples N images afterwards and
prints the class accuracy). Everything random comes from ``--seed``: the initial weights (global RNG seeded once),
the world images (fresh world seeds ``seed * 2^32 + k`` for the k-th image, so runs never share data), and the
stages, timesteps, noise and label dropout (one ``torch.Generator``). Results are reproducible for a given step
count; a ``--minutes`` bound stops at a machine-dependent step.

The saved weights are the EMA ones, as ``model.safetensors`` (flat state dict, official parameter names) beside a
``config.yaml`` with ``model.params``, ``scheduler.num_train_timesteps`` / ``num_stages`` and ``data.resolution``,
which the pack's PixelFlow loader reads like a release.
"""

from __future__ import annotations

if __name__ == "__main__" and __package__ == "train":  # python -m train.pixelflow_c2i, from the repository root
    from . import run_in_pack

    run_in_pack("pixelflow_c2i")
    raise SystemExit

import argparse
import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import save_file
from torch import nn

from ..models.pixelflow import PixelFlowConfig, PixelFlowModel
from ..models.shapes import CANVAS, CLASS_NAMES
from ..samplers.pixelflow_schedule import CascadeSchedule, cascade_schedule
from .pixelflow_objective import flow_loss, initialise, training_batches
from .shapes_world import generate_many, image_batch

NUM_TRAIN_TIMESTEPS = 1000
# 4 stages (4 -> 8 -> 16 -> 32 px) so the sampler's default "official" class-guidance ramp applies; patch 2.
SHAPES_C2I = PixelFlowConfig(num_attention_heads=4, attention_head_dim=24, depth=6, patch_size=2,
                             num_classes=len(CLASS_NAMES), attention_bias=True)
SHAPES_C2I_STAGES = 4
WORLD_SEED_STRIDE = 2**32  # world seeds of run ``seed`` start at ``seed * stride``


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; the defaults are the shipped recipe."""

    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    log_every: int = 50


@dataclass(frozen=True)
class TrainResult:
    """The EMA model and the loss of every step."""

    ema: PixelFlowModel
    losses: list[float]
    seconds: float


def world_batch(seed: int, step: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step ``step``'s fresh world images ``[B, 3, 32, 32]`` in [-1, 1] and their class labels ``[B]``."""
    first = seed * WORLD_SEED_STRIDE + step * batch_size
    samples = generate_many(range(first, first + batch_size))
    images = image_batch(samples).permute(0, 3, 1, 2) * 2 - 1  # (B, 3, 32, 32)
    return images, torch.tensor([sample.class_index for sample in samples])


def ema_decay(step: int, limit: float) -> float:
    """DiT-style warm-up of the EMA decay, so early averages are not dominated by the random initial weights."""
    return min(limit, (1 + step) / (10 + step))


def train(config: PixelFlowConfig, schedule: CascadeSchedule, *, seed: int, steps: int | None = None,
          minutes: float | None = None, settings: TrainSettings = TrainSettings(),
          log: Callable[[str], None] = print) -> TrainResult:
    """Train from ``seed`` until ``steps`` steps or ``minutes`` minutes, whichever comes first."""
    if steps is None and minutes is None:
        raise ValueError("bound the run with steps, minutes or both")
    torch.manual_seed(seed)
    model = PixelFlowModel(config)
    initialise(model)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: min(1.0, (step + 1) / settings.warmup_steps))
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    began = time.perf_counter()
    step = 0
    while (steps is None or step < steps) and (minutes is None or time.perf_counter() - began < minutes * 60):
        images, labels = world_batch(seed, step, settings.batch_size)
        loss = flow_loss(model, training_batches(images, labels, schedule, config.num_classes, generator))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimiser.step()
        warmup.step()
        decay = ema_decay(step, settings.ema_decay)
        with torch.no_grad():
            for averaged, current in zip(ema.parameters(), model.parameters()):
                averaged.lerp_(current, 1 - decay)
        losses.append(loss.item())
        step += 1
        if step % settings.log_every == 0:
            recent = losses[-settings.log_every:]
            log(f"step {step}  loss {sum(recent) / len(recent):.4f}  elapsed {time.perf_counter() - began:.0f}s")
    return TrainResult(ema.eval(), losses, time.perf_counter() - began)


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for model.safetensors and config.yaml")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock bound of the training loop")
    parser.add_argument("--steps", type=int, default=None, help="step bound (reproducible runs)")
    parser.add_argument("--batch-size", type=int, default=TrainSettings.batch_size)
    parser.add_argument("--lr", type=float, default=TrainSettings.lr)
    parser.add_argument("--eval", type=int, default=0, metavar="N", help="sample N images afterwards, print accuracy")
    args = parser.parse_args(argv)
    if args.minutes is None and args.steps is None:
        parser.error("give --minutes, --steps or both")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    schedule = cascade_schedule(NUM_TRAIN_TIMESTEPS, SHAPES_C2I_STAGES)
    settings = TrainSettings(batch_size=args.batch_size, lr=args.lr)
    parameters = sum(p.numel() for p in PixelFlowModel(SHAPES_C2I).parameters())
    print(f"PixelFlow c2i: {parameters / 1e6:.2f}M parameters, {SHAPES_C2I_STAGES} stages, {settings}", flush=True)
    result = train(SHAPES_C2I, schedule, seed=args.seed, steps=args.steps, minutes=args.minutes, settings=settings,
                   log=lambda line: print(line, flush=True))
    done = len(result.losses)
    print(f"{done} steps in {result.seconds:.0f}s: {done / result.seconds:.2f} steps/s, "
          f"{done * settings.batch_size / result.seconds:.0f} samples/s", flush=True)
    provenance = {"script": "train/pixelflow_c2i.py", "seed": args.seed, "steps": done, **asdict(settings)}
    weights = save_release(result.ema, schedule, args.out, resolution=CANVAS, provenance=provenance)
    print(f"saved {weights} ({weights.stat().st_size / 2**20:.2f} MB)", flush=True)
    if args.eval:
        from .pixelflow_eval import class_accuracy, format_accuracy

        print(format_accuracy(class_accuracy(result.ema, schedule, samples=args.eval)), flush=True)


if __name__ == "__main__":
    main()
