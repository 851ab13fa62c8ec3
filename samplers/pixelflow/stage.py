"""One cascade stage as a problem for a stage solver, and the two official solvers (Euler, dopri5).

A stage solver receives a :class:`StageProblem` and returns the state at the stage's end (local time 1). The cascade
sampler runs one solver per stage (reward search, which carries many particles across stages, walks the cascade
itself: :mod:`.search_walk`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from ..common import Trace
from .dopri5 import dopri5

Velocity = Callable[[Tensor, "Tensor | float", int], Tensor]  # (x, global timestep, stage) -> guided velocity
Report = Callable[[Tensor, float], None]  # (state, fraction of the stage done)


@dataclass
class StageProblem:
    """Integrate ``dx/dt = velocity(x, T(t), stage)`` from local time ``t[0]`` to 1.

    Local time runs from 0 (the stage's noisy start) to 1 (its clean end). ``timesteps[k]`` is the global model
    timestep at the grid time ``t[k]``; the grid maps local ``[0, window_end]`` linearly onto
    ``timestep_range``. Solvers must call ``report`` as they advance (progress, previews, interrupts).
    """

    stage: int
    num_stages: int
    x: Tensor  # (B, C, H, W) float32, the state at t[0]
    t: Tensor  # float64 (n+1,), local times ending at 1.0
    timesteps: Tensor  # float64 (n,), global timesteps at t[:-1]
    timestep_range: tuple[float, float]  # global timesteps at local 0 and at window_end
    window_end: float
    velocity: Velocity
    report: Report
    trace: Trace | None = None

    def timestep_at(self, local_t: float | Tensor) -> float | Tensor:
        """The global timestep of any local time(s), on the Euler grid's linear map."""
        first, last = self.timestep_range
        return first + (last - first) * local_t / self.window_end


StageSolver = Callable[[StageProblem], Tensor]


def euler_stage(problem: StageProblem) -> Tensor:
    """The official first-order step ``x += (t[k+1] - t[k]) v`` on the grid, in float32."""
    x, trace = problem.x, problem.trace
    t = problem.t.float()  # the official step takes differences of float32 times
    steps = len(problem.timesteps)
    for k in range(steps):
        if trace is not None:
            trace.scope = f"s{problem.stage}.k{k}"
            trace.record("x_in", x)
        v = problem.velocity(x, problem.timesteps[k], problem.stage)
        x = x + (t[k + 1] - t[k]) * v
        problem.report(x, (k + 1) / steps)
    if trace is not None:
        trace.record("x_out", x)
    return x


def dopri5_stage(problem: StageProblem, *, atol: float = 1e-6, rtol: float = 1e-3) -> Tensor:
    """Adaptive Dormand–Prince over the stage, as the official ``use_ode_dopri5`` option.

    The official solver maps local ``[0, 1]`` (not ``[0, window_end]``) onto the timestep range, so its timesteps
    differ slightly from Euler's; that map is kept here.
    """
    first, last = problem.timestep_range
    start = problem.t[0].item()

    def derivative(local_t: float, x: Tensor) -> Tensor:
        return problem.velocity(x, first + (last - first) * local_t, problem.stage)

    def advanced(local_t: float, x: Tensor) -> None:
        problem.report(x, (local_t - start) / (1.0 - start))

    return dopri5(derivative, problem.x, start, 1.0, atol=atol, rtol=rtol, on_step=advanced)


STAGE_SOLVERS: dict[str, StageSolver] = {"euler": euler_stage, "dopri5": dopri5_stage}
