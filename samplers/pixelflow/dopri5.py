"""Adaptive Dormand–Prince 5(4) integration of ``dy/dt = f(t, y)`` over one interval, in pure torch.

Dormand & Prince, "A family of embedded Runge-Kutta formulae" (1980); step control and the initial step follow
Hairer, Nørsett & Wanner, "Solving Ordinary Differential Equations I", II.4. PixelFlow's optional solver
(``pixelflow/solver_ode_wrapper.py``) calls torchdiffeq's ``dopri5`` with ``atol=1e-6, rtol=1e-3``; this is our own
integrator with the same tableau and tolerances, so results agree with a fine-step reference to the tolerance,
not bit for bit with torchdiffeq (its step-size heuristics differ in detail).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

# Butcher tableau (nodes C, stage weights A) and the 5th/4th-order solution weights.
C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
B5 = A[6] + (0.0,)
B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
ERROR_WEIGHTS = tuple(b5 - b4 for b5, b4 in zip(B5, B4))
ORDER = 5
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0

Derivative = Callable[[float, Tensor], Tensor]


def _error_norm(error: Tensor, y0: Tensor, y1: Tensor, atol: float, rtol: float) -> float:
    """RMS of the error scaled by ``atol + rtol * max(|y0|, |y1|)``; <= 1 means the step is accepted."""
    scale = atol + rtol * torch.maximum(y0.abs(), y1.abs())
    return (error / scale).pow(2).mean().sqrt().item()


def _initial_step(f: Derivative, t0: float, y0: Tensor, f0: Tensor, span: float, atol: float, rtol: float) -> float:
    """Hairer's starting step: small enough that an Euler step changes y by ~1% of its scale."""
    scale = atol + rtol * y0.abs()
    d0 = (y0 / scale).pow(2).mean().sqrt().item()
    d1 = (f0 / scale).pow(2).mean().sqrt().item()
    h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
    h0 = min(h0, span)
    f1 = f(t0 + h0, y0 + h0 * f0)
    d2 = ((f1 - f0) / scale).pow(2).mean().sqrt().item() / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1.0 / ORDER)
    return min(100 * h0, h1, span)


def dopri5(
    f: Derivative,
    y0: Tensor,
    t0: float,
    t1: float,
    *,
    atol: float = 1e-6,
    rtol: float = 1e-3,
    max_steps: int = 10_000,
    on_step: Callable[[float, Tensor], None] | None = None,
) -> Tensor:
    """Integrate from ``t0`` to ``t1 > t0`` and return ``y(t1)``; ``on_step(t, y)`` after every accepted step.

    ``f`` is evaluated in float32 (or the dtype of ``y0``); the state and the step arithmetic stay in that dtype.
    Raises ``RuntimeError`` when the step size collapses or ``max_steps`` is exceeded (a diverging model).
    """
    if not t1 > t0:
        raise ValueError(f"dopri5 integrates forward in time, got t0={t0}, t1={t1}")
    t, y = t0, y0
    k1 = f(t, y)
    h = _initial_step(f, t, y, k1, t1 - t0, atol, rtol)
    for _ in range(max_steps):
        if t >= t1:
            return y
        final = h >= t1 - t
        h = t1 - t if final else h
        stages = [k1]
        for i in range(1, 7):
            increment = sum(a * k for a, k in zip(A[i], stages) if a != 0.0)
            stages.append(f(t + C[i] * h, y + h * increment))
        y_next = y + h * sum(b * k for b, k in zip(B5, stages) if b != 0.0)  # 5th order; equals the 7th stage's point
        error = h * sum(e * k for e, k in zip(ERROR_WEIGHTS, stages) if e != 0.0)
        norm = _error_norm(error, y, y_next, atol, rtol)
        if not math.isfinite(norm):
            raise RuntimeError(f"dopri5: the derivative is not finite at t={t:.6g}")
        if norm <= 1.0:
            t, y, k1 = t1 if final else t + h, y_next, stages[6]  # first-same-as-last: the 7th stage is f at the new point
            if on_step is not None:
                on_step(t, y)
        factor = MAX_FACTOR if norm == 0.0 else min(MAX_FACTOR, max(MIN_FACTOR, SAFETY * norm ** (-1.0 / ORDER)))
        h *= factor
        if h < 1e-12 * max(1.0, abs(t1)):
            raise RuntimeError(f"dopri5: step size collapsed at t={t:.6g}")
    raise RuntimeError(f"dopri5: no convergence within {max_steps} steps")
