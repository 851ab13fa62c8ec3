"""The reverse-time SDE with the marginals of a flow ODE: diffusion coefficients, drift, Euler-Maruyama.

Kim et al. (arXiv 2503.19385) Eq. 7-9 and Tab. 8; official ``rbf/prior/flux.py`` (``get_sde_diffuse``,
``get_sde_drift``, ``FluxPrior.step``) @ b65bb07. For any ``g >= 0`` the SDE
``dx = [u - g^2/2 grad log p] dt + g dw`` run from time 1 to 0 has the marginals of ``dx = u dt``; the official code
integrates it backwards with positive steps ``dt = r - r_next``: ``x + (-u + g^2/2 score) dt + g sqrt(dt) z``, with
``g`` taken at the current time only. ``g(r) = 3 r^2`` (``square``, norm 3) is the released choice.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .interpolants import Coefficients, per_sample, score_from_velocity

DIFFUSION_COEFFICIENTS = ("square", "sigma", "constant", "sin", "linear", "clipping", "exp", "tan")
DEFAULT_DIFFUSION = "square"
DEFAULT_DIFFUSION_NORM = 3.0
EXP_DIFFUSION_WIDTH = 0.1  # official exp_diff_coeff_sigma


def diffusion_coefficient(r: Tensor, name: str, norm: float, coefficients: Coefficients | None = None) -> Tensor:
    """``g(r)`` for the official options (``sigma`` needs the interpolant's ``coefficients`` at ``r``):

    square ``norm r^2``; sigma ``norm sigma_r``; constant ``norm``; sin ``norm sin(pi r / 2)``; linear ``norm r``;
    clipping ``norm max(0, 2 (r - 1/2))``; exp ``norm exp(-((r - 1) / 0.1)^2)``; tan ``norm tan(pi/2 min(r, .95))``.
    """
    if name == "square":
        return norm * r**2.0
    if name == "sigma":
        if coefficients is None:
            raise ValueError("the 'sigma' diffusion coefficient needs the interpolant's coefficients")
        return norm * coefficients.sigma
    if name == "constant":
        return torch.full_like(r, norm)
    if name == "sin":
        return norm * torch.sin(math.pi / 2 * r)
    if name == "linear":
        return norm * r
    if name == "clipping":
        return norm * torch.clamp(2.0 * (r - 0.5), min=0.0)
    if name == "exp":
        return norm * torch.exp(-(((r - 1) / EXP_DIFFUSION_WIDTH) ** 2.0))
    if name == "tan":
        return norm * torch.tan(math.pi / 2 * torch.clamp(r, min=0, max=0.95))
    raise ValueError(f"unknown diffusion coefficient {name!r}; choose one of {', '.join(DIFFUSION_COEFFICIENTS)}")


def sde_drift(x: Tensor, velocity: Tensor, coefficients: Coefficients, g: Tensor) -> Tensor:
    """``-u + g^2/2 score`` (per-sample ``g`` of shape ``[N]``); with ``g = 0`` this is the ODE drift ``-u``."""
    score = score_from_velocity(x, velocity, coefficients)
    return -velocity + (0.5 * per_sample(g, x) ** 2) * score


def euler_maruyama(x: Tensor, drift: Tensor, g: Tensor, dt: Tensor, noise: Tensor | None) -> Tensor:
    """One backward step of positive size ``dt`` ``[N]``: ``x + drift dt + g sqrt(dt) z`` (no noise term when
    ``noise`` is None, i.e. the probability-flow ODE's Euler step)."""
    step = per_sample(dt, x)
    mean = x + drift * step
    if noise is None:
        return mean
    return mean + per_sample(g, x) * (noise * torch.sqrt(torch.abs(step)))
