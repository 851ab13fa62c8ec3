"""Time grids of the flow searches: the ``exp`` schedule, in the float32 arithmetic of the official code.

Kim et al. (arXiv 2503.19385) App. C; official ``rbf/time_sampler/base.py`` (``FluxTimeSampler``) and the
``FlowMatchEulerDiscreteScheduler.set_timesteps`` copy in ``rbf/prior/flux.py`` @ b65bb07. The official loops keep
times in thousandths (``t_max = 1000``). A linear counter ``s`` falls from 1000 to 0 and is mapped to the path time
``r = sqrt(1 - (1 - s/1000)^2)`` (paper App. C prints ``1 - (1 - t)^2``; the code takes the square root), so steps
are short near the noise end. Rollover Budget Forcing steps the counter itself per chain; the other searches use the
fixed grid ``r_k = sqrt(1 - x_k^2)``, ``x_k = linspace(0, 1 - 1/M, M)``, then 0.

Beyond the official code, a search may enter the path part-way at ``r_start < 1`` (image-to-image, a cascade
stage): the counter then starts at ``1000 (1 - sqrt(1 - r_start^2))`` and the grid covers ``x`` from
``sqrt(1 - r_start^2)``; with ``r_start = 1`` both are exactly the official ones.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

T_MAX = 1000.0  # official t_max: times are passed around in thousandths


class TimeGrid(NamedTuple):
    """Path times ``r_0 > ... > r_M = 0`` float32 ``[M+1]`` and the positive step sizes ``[M]`` the loop uses."""

    times: Tensor
    steps: Tensor


def exp_time(counter: Tensor) -> Tensor:
    """Path time ``r`` for linear counters in thousandths (float32), as ``FluxTimeSampler(t_query=...)`` then
    ``/ 1000``."""
    return T_MAX * (1.0 - (1.0 - counter / T_MAX) ** 2) ** 0.5 / T_MAX


def counter_start(r_start: float) -> float:
    """The counter (thousandths) whose :func:`exp_time` is ``r_start``; exactly ``t_max`` for ``r_start = 1``."""
    if not 0.0 < r_start <= 1.0:
        raise ValueError(f"the search must start at a path time in (0, 1], got {r_start}")
    return T_MAX if r_start == 1.0 else T_MAX * (1.0 - math.sqrt(1.0 - r_start * r_start))


def counter_step(counter: Tensor, start: float, steps: int) -> Tensor:
    """One decrement of the counters by ``start / steps``, clamped at 0 (official ``t_curr - t_max / max_steps``)."""
    return torch.clamp(counter - start / steps, min=0.0)


def step_between(counter: Tensor, following: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(r, r_next, dt)`` of a counter step: ``dt`` is the difference of the thousandths times over 1000, as the
    official ``d_t / 1000.0``."""
    here, there = T_MAX * exp_time(counter), T_MAX * exp_time(following)
    return here / T_MAX, there / T_MAX, (here - there) / T_MAX


def exp_grid(steps: int, r_start: float = 1.0) -> TimeGrid:
    """The fixed grid of the particle searches (official ``FluxTimeSampler(step=k)`` through the flow-matching
    scheduler with shift 1): ``x_k`` in float64, times rounded to float32 before the thousandths arithmetic."""
    if steps < 1:
        raise ValueError(f"need at least one step, got {steps}")
    x_start = 0.0 if r_start == 1.0 else math.sqrt(1.0 - r_start * r_start)
    x = np.linspace(x_start, 1.0 - (1.0 - x_start) / steps, steps)  # float64
    sigmas = torch.from_numpy((1 - x**2) ** 0.5).to(torch.float32)
    sigmas = torch.cat([sigmas, torch.zeros(1)])  # (M+1,)
    thousandths = sigmas * T_MAX
    return TimeGrid(thousandths / T_MAX, (sigmas[:-1] - sigmas[1:]) * T_MAX / T_MAX)


def uniform_times(start: float, stop: float, steps: int) -> Tensor:
    """``steps + 1`` evenly spaced float32 times from ``start`` to ``stop`` (Search-over-Paths' ODE sub-steps and the
    finishing phase)."""
    return torch.linspace(start, stop, steps + 1, dtype=torch.float64).to(torch.float32)
