"""PixelFlow's cascade sampler: low resolution first, upsample and re-noise at every stage change.

Follows ``PixelFlowPipeline.__call__`` (ShoufaChen/PixelFlow @ 8805204, ``pixelflow/pipeline_pixelflow.py``): start
from N(0, 1) noise at ``size / 2^(S-1)``; for each stage set its time grid, and from the second stage on upsample
2x (nearest) and re-noise ``x <- alpha x + beta block_noise``; then integrate the stage (Euler by default). The
result is the final state in pixel units ([-1, 1] for a good sample; not clamped here).

Beyond the official code: image-to-image (enter the cascade at the stage and time matching a strength, from the
image mixed with noise exactly as in training), and one solver per stage. Reward search across the cascade
(:mod:`.search`) reuses the entry point, the noised entry and the stage transition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common import Callback, Trace
from ..pixels import pixels_to_image
from .noise import PixelFlowNoise
from .schedule import CascadeSchedule
from .stage import StageProblem, StageSolver, Velocity



def size_multiple(patch_size: int, num_stages: int) -> int:
    """Square sizes must be multiples of this: every stage's resolution must hold whole patches."""
    return patch_size * 2 ** (num_stages - 1)


def check_size(size: int, patch_size: int, num_stages: int) -> None:
    """Raise ``ValueError`` naming the nearest valid sizes unless ``size`` fits the patch and stage count."""
    multiple = size_multiple(patch_size, num_stages)
    if size < multiple or size % multiple:
        below = max(multiple, size // multiple * multiple)
        raise ValueError(
            f"size {size} does not fit this model: with patch {patch_size} and {num_stages} stages the size must be "
            f"a multiple of {multiple} (e.g. {below} or {below + multiple})"
        )


def stage_resolution(size: int, stage: int, num_stages: int) -> int:
    return size // 2 ** (num_stages - 1 - stage)


def entry_point(schedule: CascadeSchedule, steps: Sequence[int], shift: float, strength: float) -> tuple[int, int]:
    """``(stage, step)`` where image-to-image at ``strength`` enters the cascade.

    The image keeps ``1 - strength`` of the signal: the entry is the first grid point, in the stage owning that
    original time, whose training signal fraction ``start_t + t (end_t - start_t)`` reaches it. Strength 1 is
    plain generation (stage 0, step 0); ``(num_stages, 0)`` means no step is left.
    """
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], got {strength}")
    signal = 1.0 - strength
    stage = min(int(signal * schedule.num_stages), schedule.num_stages - 1)
    while stage < schedule.num_stages:
        start, end = schedule.start_t[stage], schedule.end_t[stage]
        local = (signal - start) / (end - start)
        _, t = schedule.stage_grid(stage, steps[stage], shift)
        later = (t[:-1] >= local - 1e-12).nonzero()
        if len(later):
            return stage, int(later[0])
        stage, signal = stage + 1, 0.0  # past the stage's last grid point: enter the next one at its start
    return stage, 0


def downsample_like_training(image: Tensor, halvings: int) -> Tensor:
    """Halve ``image`` ``halvings`` times with bilinear interpolation, as PixelFlow's training data pipeline does."""
    for _ in range(halvings):
        image = F.interpolate(image, size=(image.shape[-2] // 2, image.shape[-1] // 2), mode="bilinear")
    return image


def noised_entry(image: Tensor, schedule: CascadeSchedule, stage: int, local_t: float, noise: Tensor) -> Tensor:
    """The training state of ``stage`` at ``local_t`` for a clean ``image`` ``[B, C, size, size]`` in [-1, 1].

    ``x = t * end + (1 - t) * start`` with ``end = end_t img_s + (1 - end_t) n`` and
    ``start = start_t up(img_{s-1}) + (1 - start_t) n`` (``img_s`` at the stage's resolution, ``img_{s-1}`` one
    level lower, nearest-upsampled back), sharing one noise ``n`` (``pixelflow/data_in1k.py``).
    """
    halvings = schedule.num_stages - 1 - stage
    target = downsample_like_training(image, halvings)  # (B, C, r, r)
    start_t, end_t = schedule.start_t[stage], schedule.end_t[stage]
    clean = local_t * end_t * target
    if start_t > 0:
        lower = downsample_like_training(target, 1)
        clean = clean + (1 - local_t) * start_t * F.interpolate(lower, size=target.shape[-2:], mode="nearest")
    noise_weight = local_t * (1 - end_t) + (1 - local_t) * (1 - start_t)
    return clean + noise_weight * noise


def sample_cascade(
    velocity: Velocity,
    schedule: CascadeSchedule,
    *,
    batch: int,
    size: int,
    steps: Sequence[int],
    shift: float,
    noise: PixelFlowNoise,
    solvers: Sequence[StageSolver],
    device: torch.device,
    channels: int = 3,
    image: Tensor | None = None,
    strength: float = 1.0,
    callback: Callback | None = None,
    trace: Trace | None = None,
) -> Tensor:
    """Run the cascade and return the final state ``[B, C, size, size]`` float32 (pixel units, unclamped).

    ``steps`` and ``solvers`` have one entry per stage; ``image`` ``[B, C, size, size]`` in [-1, 1] with
    ``strength < 1`` starts from that image instead of pure noise. ``size`` must already be valid
    (:func:`check_size`).
    """
    stages = schedule.num_stages
    if len(steps) != stages or len(solvers) != stages:
        raise ValueError(f"need one step count and one solver per stage ({stages}), got {len(steps)} and {len(solvers)}")
    entry_stage, entry_step = (0, 0) if image is None else entry_point(schedule, steps, shift, strength)
    if entry_stage == stages:
        return image.float().to(device)
    grids = [schedule.stage_grid(s, steps[s], shift) for s in range(stages)]
    total = steps[entry_stage] - entry_step + sum(steps[entry_stage + 1:])
    done = 0

    resolution = stage_resolution(size, entry_stage, stages)
    shape = (batch, channels, resolution, resolution)
    start_noise = noise.gaussian(shape).to(device)
    if trace is not None:
        trace.record("initial_noise", start_noise)
    x = start_noise
    if image is not None and (entry_stage, entry_step) != (0, 0):
        local_t = grids[entry_stage][1][entry_step].item()
        x = noised_entry(image.float().to(device), schedule, entry_stage, local_t, start_noise)

    for stage in range(entry_stage, stages):
        timesteps, t = grids[stage]
        first_step = entry_step if stage == entry_stage else 0
        if stage > entry_stage:
            x = _enter_stage(x, stage, schedule, noise, trace)
        stage_steps = len(timesteps) - first_step

        def report(state: Tensor, fraction: float, done_before: int = done, count: int = stage_steps) -> None:
            if callback is not None:
                callback(done_before + round(fraction * count), total, pixels_to_image(state[:1]))

        problem = StageProblem(
            stage=stage, num_stages=stages, x=x, t=t[first_step:], timesteps=timesteps[first_step:],
            timestep_range=schedule.timestep_map(stage), window_end=schedule.local_t_end, velocity=velocity,
            report=report, trace=trace,
        )
        x = solvers[stage](problem)
        if not torch.isfinite(x).all():
            raise FloatingPointError(f"the model produced NaN or infinite values in stage {stage}: check its weights "
                                     "and dtype (fp16 can overflow; try bf16 or fp32)")
        done += stage_steps
    if trace is not None:
        trace.scope = ""
        trace.record("final_latents", x)
    return x


def _enter_stage(x: Tensor, stage: int, schedule: CascadeSchedule, noise: PixelFlowNoise, trace: Trace | None
                 ) -> Tensor:
    """The stage transition with the block noise drawn from ``noise`` (recorded in ``trace``)."""
    block = noise.block(stage, (x.shape[0], x.shape[1], x.shape[2] * 2, x.shape[3] * 2)).to(x.device)
    if trace is not None:
        trace.scope = f"s{stage}"
        trace.record("x_before_upsample", x)
        trace.record("x_upsampled", F.interpolate(x, scale_factor=2, mode="nearest"))
        trace.record("block_noise", block)
    return enter_stage(x, stage, schedule, block)


def enter_stage(x: Tensor, stage: int, schedule: CascadeSchedule, block: Tensor) -> Tensor:
    """Enter ``stage`` from the one below: nearest 2x upsampling, then ``alpha x + beta block`` with the block noise
    ``block`` ``[B, C, 2H, 2W]`` (the stage transition)."""
    upsampled = F.interpolate(x, scale_factor=2, mode="nearest")  # (B, C, 2H, 2W)
    alpha, beta = schedule.renoise(stage)
    return alpha * upsampled + beta * block
