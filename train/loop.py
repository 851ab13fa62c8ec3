"""The training loop shared by every built-in model (PixelFlow, the tiny KL VAE, MAR, ...): fresh shapes-world
batches, AdamW with warm-up and cosine decay, gradient clipping, an EMA copy, progress lines, snapshots, and the
training scripts' common command line.

What a model trains is given by ``build()`` (the trainable modules, a ``ModuleDict``; called right after the global
RNG is seeded) and ``loss(modules, images, samples, generator)`` (one step's scalar loss on the world images).
Everything random comes from ``seed``: the initial weights (global RNG seeded once), the world images (fresh world
seeds ``seed * 2^32 + k`` for the k-th image, so runs never share data), and whatever the loss draws (one
``torch.Generator``). Results are reproducible for a given step count; a ``--minutes`` bound stops at a
machine-dependent step.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..tooling.world import ShapesSample, generate_many, image_batch

WORLD_SEED_STRIDE = 2**32  # world seeds of run ``seed`` start at ``seed * stride``
BF16_NATIVE = torch.ops.mkldnn._is_mkldnn_bf16_supported()  # oneDNN has bf16 kernels for this CPU (AVX-512 or AMX)

Build = Callable[[], nn.ModuleDict]
Loss = Callable[[nn.ModuleDict, Tensor, list[ShapesSample], torch.Generator], Tensor]
Save = Callable[[nn.ModuleDict, nn.ModuleDict, Path, dict], Path]  # (EMA, raw, folder, provenance) -> file written
Snapshot = Callable[[int, nn.ModuleDict, nn.ModuleDict], None]  # (step, EMA modules, raw modules)


def training_autocast() -> contextlib.AbstractContextManager:
    """bf16 autocast on CPUs with native bf16 kernels, where it trains the tokenizers and token models about twice as
    fast as float32; float32 elsewhere. Why not always: on an AVX2-only CPU bf16 is emulated, and a MAR step of the
    width-192 model took about 12 s instead of 0.85 s in float32 (2-core AMD EPYC, torch 2.13). The two round
    differently, so a rerun on the other kind of CPU is not bit-identical to the shipped model."""
    return torch.autocast("cpu", torch.bfloat16, enabled=BF16_NATIVE)


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; the defaults are the built-in PixelFlow recipe."""

    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    cosine_decay: bool = True  # lr follows a half cosine to 0 over a ``steps``-bounded run (constant otherwise)
    log_every: int = 50


@dataclass(frozen=True)
class TrainResult:
    """The EMA modules, the raw (last) modules and the loss of every step."""

    ema: nn.ModuleDict
    losses: list[float]
    seconds: float
    raw: nn.ModuleDict


def world_batch(seed: int, step: int, batch_size: int) -> tuple[Tensor, list[ShapesSample]]:
    """Step ``step``'s fresh world images ``[B, 3, 32, 32]`` in [-1, 1] and the samples behind them."""
    first = seed * WORLD_SEED_STRIDE + step * batch_size
    samples = generate_many(range(first, first + batch_size))
    return image_batch(samples).permute(0, 3, 1, 2) * 2 - 1, samples  # (B, 3, 32, 32)


def ema_decay(step: int, limit: float) -> float:
    """DiT-style warm-up of the EMA decay, so early averages are not dominated by the random initial weights."""
    return min(limit, (1 + step) / (10 + step))


def learning_rate_factor(step: int, settings: TrainSettings, steps: int | None) -> float:
    """Linear warm-up, then (for a run of known length) a half cosine to 0: the decay settles what a short run
    has learned, where a constant rate leaves the weights (and their EMA) jittering around it."""
    warmup = min(1.0, (step + 1) / settings.warmup_steps)
    if not settings.cosine_decay or steps is None or step < settings.warmup_steps:
        return warmup
    return 0.5 * (1 + math.cos(math.pi * (step - settings.warmup_steps) / max(1, steps - settings.warmup_steps)))


def train_modules(build: Build, loss: Loss, *, seed: int, steps: int | None = None, minutes: float | None = None,
                  settings: TrainSettings = TrainSettings(), log: Callable[[str], None] = print,
                  snapshot: Snapshot | None = None,
                  snapshot_every: int = 0) -> TrainResult:
    """Train from ``seed`` until ``steps`` steps or ``minutes`` minutes, whichever comes first; ``snapshot(step,
    ema, raw)`` is called every ``snapshot_every`` steps (for the accuracy-versus-minutes curve)."""
    if steps is None and minutes is None:
        raise ValueError("bound the run with steps, minutes or both")
    torch.manual_seed(seed)
    modules = build()
    ema = copy.deepcopy(modules).requires_grad_(False)
    optimiser = torch.optim.AdamW(modules.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    rate = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: learning_rate_factor(step, settings, steps))
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    began = time.perf_counter()
    step = 0
    while (steps is None or step < steps) and (minutes is None or time.perf_counter() - began < minutes * 60):
        images, samples = world_batch(seed, step, settings.batch_size)
        value = loss(modules, images, samples, generator)
        optimiser.zero_grad(set_to_none=True)
        value.backward()
        nn.utils.clip_grad_norm_(modules.parameters(), settings.grad_clip)
        optimiser.step()
        rate.step()
        decay = ema_decay(step, settings.ema_decay)
        with torch.no_grad():
            for averaged, current in zip(ema.parameters(), modules.parameters()):
                averaged.lerp_(current, 1 - decay)
        losses.append(value.item())
        step += 1
        if step % settings.log_every == 0:
            recent = losses[-settings.log_every:]
            log(f"step {step}  loss {sum(recent) / len(recent):.4f}  elapsed {time.perf_counter() - began:.0f}s")
        if snapshot is not None and snapshot_every and step % snapshot_every == 0:
            snapshot(step, ema, modules)
    return TrainResult(ema.eval(), losses, time.perf_counter() - began, modules.eval())


def run_arguments(description: str, argv: Sequence[str] | None = None,
                  extra: Callable[[argparse.ArgumentParser], None] | None = None,
                  defaults: TrainSettings = TrainSettings()) -> argparse.Namespace:
    """The training scripts' command line (``extra`` adds a script's own options; ``defaults`` its recipe)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True, help="where the trained model is written")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock bound of the training loop")
    parser.add_argument("--steps", type=int, default=None, help="step bound (reproducible runs)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--eval", type=int, default=0, metavar="N", help="sample N images afterwards, print accuracy")
    parser.add_argument("--snapshots", type=Path, default=None, help="folder for EMA snapshots (one per --every)")
    parser.add_argument("--every", type=int, default=1000, help="steps between snapshots")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    if args.minutes is None and args.steps is None:
        parser.error("give --minutes, --steps or both")
    return args


def run(build: Build, loss: Loss, args: argparse.Namespace, title: str, save: Save,
        defaults: TrainSettings = TrainSettings()) -> TrainResult:
    """Train as the command line says, print progress, and ``save(ema, raw, out, provenance)`` the result (and every
    snapshot, into ``snapshots/stepNNNNNN``); returns the result for the script's evaluation."""
    settings = replace(defaults, batch_size=args.batch_size, lr=args.lr)
    torch.manual_seed(args.seed)
    parameters = sum(p.numel() for p in build().parameters())
    print(f"{title}: {parameters / 1e6:.2f}M parameters, {settings}", flush=True)
    began = time.perf_counter()

    def snapshot(step: int, ema: nn.ModuleDict, raw: nn.ModuleDict) -> None:
        minutes = (time.perf_counter() - began) / 60
        provenance = {"seed": args.seed, "steps": step, "minutes": round(minutes, 2)}
        save(ema, raw, args.snapshots / f"step{step:06d}", provenance)

    result = train_modules(build, loss, seed=args.seed, steps=args.steps, minutes=args.minutes, settings=settings,
                           log=lambda line: print(line, flush=True), snapshot=snapshot if args.snapshots else None,
                           snapshot_every=args.every)
    done = len(result.losses)
    print(f"{done} steps in {result.seconds:.0f}s: {done / result.seconds:.2f} steps/s, "
          f"{done * settings.batch_size / result.seconds:.0f} samples/s", flush=True)
    provenance = {"seed": args.seed, "steps": done, "minutes": round(result.seconds / 60, 2), **asdict(settings)}
    written = save(result.ema, result.raw, args.out, provenance)
    print(f"saved {written} ({written.stat().st_size / 2**20:.2f} MB)", flush=True)
    return result


def save_container(path: Path, modules: dict[str, nn.Module], config: Any, provenance: dict) -> Path:
    """The official torch container at ``path`` (``{key: state dict}`` for each of ``modules``, plus the
    ``training`` provenance, which loaders ignore) and ``config`` (a dataclass: the constructor arguments) in
    ``<stem>.json`` beside it; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    weights = {key: {name: value.contiguous() for name, value in module.state_dict().items()}
               for key, module in modules.items()}
    torch.save({**weights, "training": provenance}, path)
    path.with_suffix(".json").write_text(json.dumps(asdict(config), indent=1) + "\n")
    return path
