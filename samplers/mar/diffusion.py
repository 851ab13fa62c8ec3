"""MAR's per-token diffusion sampler: the cosine DDPM schedule, its respacing, and ancestral steps with learned variance.

From LTH14/mar ``diffusion/`` (itself from improved-DDPM / DiT): ``gaussian_diffusion.py`` (cosine betas, posterior
coefficients, ``p_mean_variance`` with ``LEARNED_RANGE`` variance and eps prediction, ``p_sample``) and
``respace.py`` (``space_timesteps`` with Python's round-half-to-even). Tables are float64, as in the official numpy
code; every coefficient is cast to float32 at use, as ``_extract_into_tensor`` does, so steps agree to float32
rounding. Temperature scales only the per-step noise (paper Sec. 3.2), never the starting noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


BASE_TIMESTEPS = 1000
MAX_BETA = 0.999

Denoiser = Callable[[Tensor, Tensor], Tensor]  # (x_t [N, C], original timesteps [N]) -> (eps_guided, v) [N, 2C]


def cosine_alpha_bar(s: float) -> float:
    return math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2


def cosine_betas(num_timesteps: int = BASE_TIMESTEPS) -> Tensor:
    """``beta_i = min(1 - abar((i+1)/T) / abar(i/T), 0.999)``, float64 [T]."""
    return torch.tensor([min(1 - cosine_alpha_bar((i + 1) / num_timesteps) / cosine_alpha_bar(i / num_timesteps),
                             MAX_BETA) for i in range(num_timesteps)], dtype=torch.float64)


def respaced_timesteps(num_timesteps: int, steps: int) -> list[int]:
    """The kept original timesteps: stride ``(T-1)/(steps-1)`` accumulated in float, each ``round``ed (half to even)."""
    if not 1 <= steps <= num_timesteps:
        raise ValueError(f"diffusion steps must be in 1..{num_timesteps}, got {steps}")
    stride = 1 if steps == 1 else (num_timesteps - 1) / (steps - 1)
    kept, position = [], 0.0
    for _ in range(steps):
        kept.append(round(position))
        position += stride
    return kept


@dataclass(frozen=True)
class DiffusionSchedule:
    """A respaced schedule: per respaced index ``i`` (0 = last step) the original timestep and every coefficient."""

    timestep_map: Tensor  # int64 [S]
    betas: Tensor  # float64 [S], and below
    alphas_cumprod: Tensor
    alphas_cumprod_prev: Tensor
    sqrt_recip_alphas_cumprod: Tensor
    sqrt_recipm1_alphas_cumprod: Tensor
    posterior_variance: Tensor
    posterior_log_variance_clipped: Tensor
    posterior_mean_coef1: Tensor
    posterior_mean_coef2: Tensor

    @property
    def steps(self) -> int:
        return len(self.timestep_map)


def diffusion_schedule(steps: int, num_timesteps: int = BASE_TIMESTEPS) -> DiffusionSchedule:
    """The cosine schedule respaced to ``steps`` (new betas ``1 - abar[t_k] / abar[t_{k-1}]``)."""
    kept = respaced_timesteps(num_timesteps, steps)
    base_abar = torch.cumprod(1.0 - cosine_betas(num_timesteps), dim=0)
    abar_kept = base_abar[kept]
    betas = 1.0 - abar_kept / torch.cat([abar_kept.new_ones(1), abar_kept[:-1]])
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    alphas_cumprod_prev = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    posterior_variance = betas * (1.0 - alphas_cumprod_prev) / (1.0 - alphas_cumprod)
    clipped = torch.cat([posterior_variance[1:2], posterior_variance[1:]]) if steps > 1 else posterior_variance
    return DiffusionSchedule(
        timestep_map=torch.tensor(kept, dtype=torch.int64),
        betas=betas,
        alphas_cumprod=alphas_cumprod,
        alphas_cumprod_prev=alphas_cumprod_prev,
        sqrt_recip_alphas_cumprod=torch.sqrt(1.0 / alphas_cumprod),
        sqrt_recipm1_alphas_cumprod=torch.sqrt(1.0 / alphas_cumprod - 1),
        posterior_variance=posterior_variance,
        posterior_log_variance_clipped=torch.log(clipped),
        posterior_mean_coef1=betas * torch.sqrt(alphas_cumprod_prev) / (1.0 - alphas_cumprod),
        posterior_mean_coef2=(1.0 - alphas_cumprod_prev) * torch.sqrt(1.0 - betas) / (1.0 - alphas_cumprod),
    )


@dataclass(frozen=True)
class StepResult:
    sample: Tensor
    pred_xstart: Tensor
    mean: Tensor
    log_variance: Tensor


def predicted_gaussian(model_output: Tensor, x: Tensor, index: int | Tensor, schedule: DiffusionSchedule
                       ) -> StepResult:
    """The model's Gaussian ``p(x_{t-1} | x_t)`` at respaced ``index`` (one int, or one per row ``[N]`` as training
    draws them) from its ``(eps, v)`` output ``[N, 2C]``: ``LEARNED_RANGE`` log-variance and eps-predicted mean (no
    clipping); ``sample`` is the mean."""
    channels = x.shape[-1]
    eps, variance_values = model_output[:, :channels], model_output[:, channels:]
    at = lambda table: table[index].float().to(x.device)[..., None]  # noqa: E731 - float64 entries, used in float32
    frac = (variance_values + 1) / 2
    log_variance = frac * torch.log(schedule.betas)[index].float().to(x.device)[..., None] \
        + (1 - frac) * at(schedule.posterior_log_variance_clipped)
    pred_xstart = at(schedule.sqrt_recip_alphas_cumprod) * x - at(schedule.sqrt_recipm1_alphas_cumprod) * eps
    mean = at(schedule.posterior_mean_coef1) * pred_xstart + at(schedule.posterior_mean_coef2) * x
    return StepResult(mean, pred_xstart, mean, log_variance)


def p_sample(model_output: Tensor, x: Tensor, index: int, schedule: DiffusionSchedule, noise: Tensor,
             temperature: float) -> StepResult:
    """One ancestral step at respaced ``index`` from the model's ``(eps, v)`` output ``[N, 2C]`` (no clipping)."""
    gaussian = predicted_gaussian(model_output, x, index, schedule)
    sample = gaussian.mean + float(index != 0) * torch.exp(0.5 * gaussian.log_variance) * noise * temperature
    return StepResult(sample, gaussian.pred_xstart, gaussian.mean, gaussian.log_variance)


def guided_output(raw: Tensor, channels: int, scale: Tensor | float) -> Tensor:
    """From the net's output on ``[cond; uncond]`` rows ``[2N, 2C]``: guided eps and the conditional half's
    variance values ``[N, 2C]`` (the official ``forward_with_cfg``, keeping only the half that matters)."""
    cond, uncond = raw.chunk(2)
    eps = uncond[:, :channels] + scale * (cond[:, :channels] - uncond[:, :channels])
    return torch.cat([eps, cond[:, channels:]], dim=1)


def sample_tokens(
    denoise: Denoiser,
    start: Tensor,
    schedule: DiffusionSchedule,
    step_noise: Callable[[int], Tensor],
    *,
    temperature: float = 1.0,
) -> Tensor:
    """Run the respaced chain from ``start`` x_T ``[N, C]``; ``step_noise(j)`` gives the j-th step's N(0, 1) draw."""
    x = start
    timestep_map = schedule.timestep_map.to(x.device)
    for j, index in enumerate(reversed(range(schedule.steps))):
        timesteps = timestep_map[index].expand(x.shape[0])  # (N,) original timesteps the MLP sees
        step = p_sample(denoise(x, timesteps), x, index, schedule, step_noise(j), temperature)
        x = step.sample
    return x
