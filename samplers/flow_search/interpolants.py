"""Interpolants of a flow model and the inference-time change from the linear path to the VP path.

Kim et al., "Inference-Time Scaling for Flow Models via Stochastic Generation and Rollover Budget Forcing"
(arXiv 2503.19385), §3-4 and App. C; official code ``KAIST-Visual-AI-Group/Flow-Inference-Time-Scaling`` @ b65bb07:
``rbf/prior/denoise_schedulers/scheduler.py`` (``CondOTScheduler``, ``VPScheduler``) and ``rbf/prior/flux.py``
(``compute_velocity_transform_scheduler``, ``get_tweedie``, ``convert_velocity_to_score``).

Conventions: an interpolant is ``x_t = alpha_t x0 + sigma_t eps`` with time 1 = noise, 0 = data. The linear (CondOT)
path is what flow models are trained on and equals ComfyUI's ``CONST`` sampling with ``sigma == t``; its velocity is
``u = eps - x0``. The VP path is used only at inference: the same SNR point of the linear path at VP time ``r`` is
``t(r) = sigma_r / (alpha_r + sigma_r)`` and the VP state is the linear state scaled by ``s_r = alpha_r + sigma_r``.
All functions take float32 tensors (times shaped ``[N]`` or broadcastable) and compute in float32 as the official
code does; per-sample time coefficients are broadcast over the trailing dimensions of the states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

VP_BETA_MIN = 0.1
VP_BETA_MAX = 20.0
INTERPOLANTS = ("vp", "linear")


class Coefficients(NamedTuple):
    """``alpha_t``, ``sigma_t`` and their time derivatives, each shaped like the times."""

    alpha: Tensor
    sigma: Tensor
    d_alpha: Tensor
    d_sigma: Tensor


def per_sample(value: Tensor, like: Tensor) -> Tensor:
    """Reshape a per-sample ``[N]`` (or scalar) value to broadcast against states ``[N, ...]``."""
    if value.dim() == 0:
        return value
    return value.reshape(value.shape[0], *([1] * (like.dim() - 1)))


def linear_coefficients(t: Tensor) -> Coefficients:
    """CondOT: ``alpha = 1 - t``, ``sigma = t``, ``alpha' = -1``, ``sigma' = 1`` (the path FLUX/SD3 are trained on)."""
    return Coefficients(1 - t, t, -torch.ones_like(t), torch.ones_like(t))


def vp_coefficients(r: Tensor, beta_min: float = VP_BETA_MIN, beta_max: float = VP_BETA_MAX) -> Coefficients:
    """VP with the linear beta schedule, oriented so ``r = 1`` is noise: ``T(r) = r^2 (B - b) / 2 + r b``,
    ``alpha = exp(-T/2)``, ``sigma = sqrt(1 - exp(-T))`` (note ``alpha_1 ~ 0.0066``: ``r = 1`` is almost, not exactly,
    pure noise, as in the official code)."""
    integral = 0.5 * r**2 * (beta_max - beta_min) + r * beta_min
    rate = r * (beta_max - beta_min) + beta_min
    decay = torch.exp(-integral)
    alpha = torch.exp(-0.5 * integral)
    sigma = torch.sqrt(1 - decay)
    return Coefficients(alpha, sigma, -0.5 * rate * alpha, 0.5 * rate * decay / sigma)


def linear_snr_inverse(snr: Tensor) -> Tensor:
    """The linear-path time whose ``alpha / sigma`` equals ``snr``: ``1 / (snr + 1)``."""
    return 1 / (snr + 1.0)


def vp_snr_inverse(snr: Tensor, beta_min: float = VP_BETA_MIN, beta_max: float = VP_BETA_MAX) -> Tensor:
    """The VP time whose ``alpha / sigma`` equals ``snr``: solve ``T(r) = -log(snr^2 / (snr^2 + 1))`` for ``r``."""
    integral = -torch.log(snr**2 / (snr**2 + 1))
    return (-beta_min + torch.sqrt(beta_min**2 + 2 * (beta_max - beta_min) * integral)) / (beta_max - beta_min)


class VPConversion(NamedTuple):
    """Where the flow model is queried for a VP time ``r``, and the chain-rule factors of the conversion."""

    flow_t: Tensor  # linear-path time (ComfyUI sigma) with the same SNR
    scale: Tensor  # s_r = sigma_r / t = alpha_r + sigma_r: VP state = scale * linear state
    dt_dr: Tensor
    ds_dr: Tensor


def linear_to_vp(r: Tensor, beta_min: float = VP_BETA_MIN, beta_max: float = VP_BETA_MAX) -> VPConversion:
    """Time and scale map of ``compute_velocity_transform_scheduler`` (official ``flux.py``), with its derivatives
    ``dt/dr = sigma_t^2 (sigma_r alpha_r' - alpha_r sigma_r') / (sigma_r^2 (sigma_t alpha_t' - alpha_t sigma_t'))``
    and ``ds/dr = (sigma_t sigma_r' - sigma_r sigma_t' dt/dr) / sigma_t^2``."""
    vp = vp_coefficients(r, beta_min, beta_max)
    t = linear_snr_inverse(vp.alpha / vp.sigma)
    lin = linear_coefficients(t)
    scale = vp.sigma / lin.sigma
    dt_dr = (lin.sigma * lin.sigma * (vp.sigma * vp.d_alpha - vp.alpha * vp.d_sigma)
             / (vp.sigma * vp.sigma * (lin.sigma * lin.d_alpha - lin.alpha * lin.d_sigma)))
    ds_dr = (lin.sigma * vp.d_sigma - vp.sigma * lin.d_sigma * dt_dr) / (lin.sigma * lin.sigma)
    return VPConversion(t, scale, dt_dr, ds_dr)


def vp_velocity_official(x: Tensor, flow_velocity: Tensor, conversion: VPConversion) -> Tensor:
    """VP velocity in the official form ``(ds/dr) x / s_r + (dt/dr) s_r u_t`` (``u_t`` queried at ``x / s_r``)."""
    scale = per_sample(conversion.scale, x)
    return per_sample(conversion.ds_dr, x) * x / scale + per_sample(conversion.dt_dr, x) * scale * flow_velocity


def eps_prediction(x_flow: Tensor, x0: Tensor, flow_t: Tensor) -> Tensor:
    """The noise implied by a clean prediction on the linear path: ``(x - (1 - t) x0) / t`` (needs ``t > 0``)."""
    t = per_sample(flow_t, x_flow)
    return (x_flow - (1 - t) * x0) / t


def velocity_from_predictions(x0: Tensor, eps: Tensor, coefficients: Coefficients) -> Tensor:
    """``alpha' x0 + sigma' eps``: any interpolant's velocity from clean and noise predictions. For the VP path this
    equals :func:`vp_velocity_official` (``alpha_r = s_r (1 - t)``, ``sigma_r = s_r t``) with less rounding."""
    return per_sample(coefficients.d_alpha, x0) * x0 + per_sample(coefficients.d_sigma, eps) * eps


def tweedie(x: Tensor, velocity: Tensor, coefficients: Coefficients) -> Tensor:
    """Clean prediction from a state and its velocity: ``(sigma u - sigma' x) / (alpha' sigma - sigma' alpha)``
    (official ``get_tweedie``); in the VP frame it equals the flow model's own x0 prediction."""
    alpha, sigma, d_alpha, d_sigma = (per_sample(value, x) for value in coefficients)
    return (sigma * velocity - d_sigma * x) / (d_alpha * sigma - d_sigma * alpha)


def score_from_velocity(x: Tensor, velocity: Tensor, coefficients: Coefficients) -> Tensor:
    """``grad log p_t(x) = (alpha/alpha' u - x) / (sigma^2 - alpha/alpha' sigma' sigma)`` (paper Eq. 8; official
    ``convert_velocity_to_score``); equals ``-eps_hat / sigma``."""
    alpha, sigma, d_alpha, d_sigma = (per_sample(value, x) for value in coefficients)
    ratio = alpha / d_alpha
    return (ratio * velocity - x) / (sigma**2 - ratio * d_sigma * sigma)


@dataclass(frozen=True)
class Interpolant:
    """The path a search runs on (``vp`` or ``linear``), always backed by a linear-path flow model.

    ``flow_point(r)`` gives the flow time (ComfyUI sigma) the model is queried at and the scale between the states;
    ``time_of_flow_sigma`` inverts it (used to enter the path part-way, e.g. image-to-image or a cascade stage).
    """

    kind: str = "vp"
    beta_min: float = VP_BETA_MIN
    beta_max: float = VP_BETA_MAX

    def __post_init__(self) -> None:
        if self.kind not in INTERPOLANTS:
            raise ValueError(f"unknown interpolant {self.kind!r}; choose one of {', '.join(INTERPOLANTS)}")

    def coefficients(self, r: Tensor) -> Coefficients:
        if self.kind == "linear":
            return linear_coefficients(r)
        return vp_coefficients(r, self.beta_min, self.beta_max)

    def flow_point(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """``(flow sigma, scale)`` for times ``r``: the model sees ``x / scale`` at ``flow sigma``."""
        if self.kind == "linear":
            return r, torch.ones_like(r)
        vp = vp_coefficients(r, self.beta_min, self.beta_max)
        return linear_snr_inverse(vp.alpha / vp.sigma), vp.alpha + vp.sigma

    def time_of_flow_sigma(self, sigma: float) -> float:
        """The path time at the flow sigma ``sigma`` in (0, 1) (the inverse of :meth:`flow_point`)."""
        if self.kind == "linear":
            return sigma
        snr = torch.tensor((1.0 - sigma) / sigma, dtype=torch.float64)
        return vp_snr_inverse(snr, self.beta_min, self.beta_max).item()
