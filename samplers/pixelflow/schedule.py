"""PixelFlow's cascade time tables: stage time ranges, global model timesteps, per-stage grids, re-noise factors.

Chen et al., "PixelFlow" (arXiv 2504.07963); the numbers follow ``PixelFlowScheduler`` and the stage transition of
``PixelFlowPipeline.__call__`` (ShoufaChen/PixelFlow @ 8805204, ``pixelflow/scheduling_pixelflow.py`` and
``pixelflow/pipeline_pixelflow.py``), including their float32/float64 mix, so the tables agree with the official
ones to float64 rounding.

Conventions: flow time runs from 0 (noise) to 1 (data). Stage ``s`` of ``S`` owns the original time interval
``[s/S, (s+1)/S]`` at resolution ``final / 2^(S-1-s)``; the model sees a *global* timestep on the
``0..num_train_timesteps-1`` scale, while each stage is integrated in its own *local* time ``t`` in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

DEFAULT_GAMMA = -1.0 / 3.0  # in-block noise correlation of the stage transition


def rectify_ratio(original_start: float, gamma: float) -> float:
    """``1 / (sqrt(1 - 1/gamma) (1 - t0) + t0)``: rescales a stage's start after upsampling + block re-noise."""
    return 1.0 / (math.sqrt(1.0 - 1.0 / gamma) * (1.0 - original_start) + original_start)


def renoise_coefficients(original_start: float, gamma: float = DEFAULT_GAMMA) -> tuple[float, float]:
    """``(alpha, beta)`` of the stage transition ``x <- alpha * up(x) + beta * block_noise``.

    Nearest upsampling leaves the noise of the previous stage identical inside each 2x2 block; adding block noise
    whose in-block correlation is ``gamma`` (zero block mean) whitens it, and ``alpha`` renormalises, so the state
    lands exactly on the training start point of the new stage (the "jumping point" fix of Pyramidal Flow).
    """
    alpha = rectify_ratio(original_start, gamma)
    return alpha, alpha * (1.0 - original_start) / math.sqrt(-gamma)


@dataclass(frozen=True)
class CascadeSchedule:
    """The stage table of a PixelFlow checkpoint (``config.yaml`` ``scheduler``: ``num_train_timesteps``,
    ``num_stages``), computed once by :func:`cascade_schedule`."""

    num_train_timesteps: int
    num_stages: int
    gamma: float
    original_start_t: tuple[float, ...]  # start of stage s on the original time axis (float32 grid value)
    start_t: tuple[float, ...]  # the same after the re-noise rescaling (s > 0): the stage's training start
    end_t: tuple[float, ...]  # end of stage s (1.0 for the last)
    timestep_bounds: tuple[tuple[float, float], ...]  # (first T, start of the next stage's T range) per stage

    @property
    def local_t_end(self) -> float:
        """Last local time of the model's timestep window, ``(N-1)/N`` as a float64 ``linspace`` entry."""
        n = self.num_train_timesteps
        return torch.linspace(0, 1, n + 1, dtype=torch.float64)[n - 1].item()

    def stage_timesteps(self, stage: int) -> Tensor:
        """Every global timestep stage ``stage`` was trained on, float64 ``[num_train_timesteps]``."""
        n = self.num_train_timesteps
        first, stop = self.timestep_bounds[stage]
        if stage == self.num_stages - 1:
            return torch.linspace(first, stop, n, dtype=torch.float64)
        return torch.linspace(first, stop, n + 1, dtype=torch.float64)[:-1]

    def stage_grid(self, stage: int, steps: int, shift: float = 1.0) -> tuple[Tensor, Tensor]:
        """The Euler grid of one stage: model timesteps float64 ``[steps]`` and local times float64 ``[steps+1]``.

        Local times are ``linspace(0, (N-1)/N, steps)`` warped by ``t / (shift + (1 - shift) t)`` with ``1.0``
        appended (so the last step is a short one from ``(N-1)/N`` to 1 when shift is 1); timesteps map the
        window ``[0, (N-1)/N]`` linearly onto the stage's timestep range.
        """
        if steps < 1:
            raise ValueError(f"stage {stage} needs at least one step, got {steps}")
        table = self.stage_timesteps(stage)
        first, last = table[0].item(), table[-1].item()
        window_end = self.local_t_end
        t = torch.linspace(0.0, window_end, steps, dtype=torch.float64)
        t = t / (shift + (1.0 - shift) * t)
        timesteps = first + (last - first) / window_end * t
        return timesteps, torch.cat([t, t.new_ones(1)])

    def timestep_map(self, stage: int) -> tuple[float, float]:
        """``(first, last)`` global timestep of ``stage``: the ends of :meth:`stage_timesteps`."""
        table = self.stage_timesteps(stage)
        return table[0].item(), table[-1].item()

    def renoise(self, stage: int) -> tuple[float, float]:
        """``(alpha, beta)`` entering ``stage`` (s >= 1) from the one below."""
        if not 1 <= stage < self.num_stages:
            raise ValueError(f"stage transitions exist for stages 1..{self.num_stages - 1}, not {stage}")
        return renoise_coefficients(self.original_start_t[stage], self.gamma)


def cascade_schedule(num_train_timesteps: int = 1000, num_stages: int = 4, gamma: float = DEFAULT_GAMMA) -> CascadeSchedule:
    """Build the stage table.

    Stage ``s`` starts at the float32 grid time ``floor(N s / S) / N``; its share of the global timestep range is
    proportional to its (rescaled) length ``end_t - start_t``, and it owns the integer timesteps from
    ``floor(N * cumulative share)`` to the next stage's first one.
    """
    n, stages = num_train_timesteps, num_stages
    if n < 2 or stages < 1:
        raise ValueError(f"need num_train_timesteps >= 2 and num_stages >= 1, got {n} and {stages}")
    if not gamma < 0:
        raise ValueError(f"gamma must be negative (in-block correlation), got {gamma}")
    grid32 = torch.arange(n, dtype=torch.float32) / n  # the official float32 time grid

    original, start, end = [], [], []
    for s in range(stages):
        start_index = max(int(n * (s / stages)), 0)
        end_index = min(int(n * ((s + 1) / stages)), n)
        t0 = grid32[start_index].item()
        original.append(t0)
        start.append(t0 * rectify_ratio(t0, gamma) if s > 0 else t0)
        end.append(grid32[end_index].item() if end_index < n else 1.0)

    lengths = [e - b for b, e in zip(start, end)]
    total = sum(lengths)
    bounds = []
    for s in range(stages):
        start_share = 0.0 if s == 0 else sum(lengths[:s]) / total
        end_share = 1.0 if s == stages - 1 else sum(lengths[: s + 1]) / total
        bounds.append((float(int(n * start_share)), float(min(int(n * end_share), n - 1))))
    return CascadeSchedule(n, stages, gamma, tuple(original), tuple(start), tuple(end), tuple(bounds))
