"""What every flow search shares: the model seen on the search path, proposals, rewards, the best-so-far, the
finishing ODE, NFE accounting, trace rows and progress.

The model is a ComfyUI-style denoiser on the linear path: ``D(x, sigma)`` predicts x0 for
``x = (1 - sigma) x0 + sigma eps`` (``CONST`` sampling), so the flow velocity is ``(x - D) / sigma``. A search on the
VP path queries it at the flow sigma with the same SNR and rescales the state (research note §7.2); the VP velocity
is then ``alpha' D + sigma' eps_hat`` and the x0 prediction (official "Tweedie") is ``D`` itself. One NFE is one
latent evaluated, whatever the batching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..common import Callback, Trace
from .grid import uniform_times
from .interpolants import Interpolant, eps_prediction, per_sample, velocity_from_predictions
from .noise import FlowSearchNoise
from .sde import diffusion_coefficient, euler_maruyama, sde_drift
from .settings import SearchSettings

Denoiser = Callable[[Tensor, Tensor], Tensor]  # (x [N, ...] at flow sigma, sigma [N]) -> x0 prediction [N, ...]
RewardFn = Callable[[Tensor], Tensor]  # x0 predictions [N, ...] -> rewards [N] float32 (higher is better)

UNSET_REWARD = -1e9  # the official "no candidate yet" reward


@dataclass(frozen=True)
class Candidate:
    """One particle as a search leaves it: path state and time, its x0 prediction and that prediction's reward."""

    x: Tensor  # [1, ...] state on the search path
    r: float  # path time of x
    x0: Tensor  # [1, ...] the model's x0 prediction at (x, r)
    reward: float


class SearchContext:
    """The model, reward, noise and bookkeeping of one search run (one output)."""

    def __init__(self, denoise: Denoiser, reward: RewardFn, settings: SearchSettings, noise: FlowSearchNoise,
                 shape: tuple[int, ...], device: torch.device, *,
                 start: Tensor | None, first_latent: Tensor | None, callback: Callback | None,
                 trace: Trace | None) -> None:
        self.denoise, self.reward_fn, self.settings = denoise, reward, settings
        self.noise, self.shape, self.device = noise, shape, device
        self.start, self.first_latent = start, first_latent  # [1, ...] on the flow path, or None
        self.callback, self.trace = callback, trace
        self.interpolant = Interpolant(settings.interpolant)
        self.nfe = 0
        self.best: Candidate | None = None

    # ------------------------------------------------------------------------------------------------ the model

    def denoise_flow(self, x: Tensor, sigma: Tensor) -> Tensor:
        """``D(x, sigma)`` in calls of at most ``batch_size`` latents; counts one NFE per latent."""
        size = self.settings.batch_size or x.shape[0]
        sigma = sigma.to(device=x.device, dtype=torch.float32)
        parts = [self.denoise(x[i:i + size], sigma[i:i + size]) for i in range(0, x.shape[0], size)]
        self.nfe += x.shape[0]
        out = torch.cat(parts) if len(parts) > 1 else parts[0]
        if out.shape != x.shape:
            raise ValueError(f"the denoiser returned shape {tuple(out.shape)} for input {tuple(x.shape)}")
        return out.float()

    def evaluate(self, x: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """Path velocity and x0 prediction of states ``x`` ``[N, ...]`` at path times ``r`` ``[N]`` (> 0)."""
        r = r.to(x.device)
        sigma, scale = self.interpolant.flow_point(r)
        x_flow = x / per_sample(scale, x)
        x0 = self.denoise_flow(x_flow, sigma)
        eps = eps_prediction(x_flow, x0, sigma)
        return velocity_from_predictions(x0, eps, self.interpolant.coefficients(r)), x0

    def initial(self, count: int, r0: float) -> tuple[Tensor, Tensor, Tensor]:
        """``count`` starting particles at path time ``r0`` with their velocities and x0 predictions.

        From pure noise: particle 0 is ``first_latent`` when given, the rest come from ``noise.initial`` (one draw).
        From a given state (``sigma_max < 1``): every particle is that state, evaluated once (1 NFE).
        """
        times = torch.full((1,), r0, dtype=torch.float32)
        if self.start is not None:
            _, scale = self.interpolant.flow_point(times)
            x = self.start * scale.item()
            velocity, x0 = self.evaluate(x, times)
            expand = (count, *self.shape)
            return x.expand(expand).clone(), velocity.expand(expand).clone(), x0.expand(expand).clone()
        rows = [self.first_latent] if self.first_latent is not None else []
        drawn = count - len(rows)
        if drawn:
            rows.append(self.noise.initial((drawn, *self.shape)).to(self.device))
        x = torch.cat(rows)
        velocity, x0 = self.evaluate(x, times.expand(count))
        return x, velocity, x0

    # --------------------------------------------------------------------------------------------- proposals

    def propose(self, x: Tensor, velocity: Tensor, r: Tensor, dt: Tensor) -> Tensor:
        """One step of size ``dt`` ``[N]`` from times ``r`` ``[N]``: Euler-Maruyama of the SDE (noise drawn here,
        one row per state) or the ODE's Euler step; reuses the cached ``velocity`` (no NFE)."""
        r, dt = r.to(x.device), dt.to(x.device)
        settings = self.settings
        if not settings.sde:
            return euler_maruyama(x, -velocity, torch.zeros_like(r), dt, None)
        coefficients = self.interpolant.coefficients(r)
        g = diffusion_coefficient(r, settings.diffusion, settings.diffusion_norm, coefficients)
        z = self.noise.step(tuple(x.shape)).to(x.device)
        return euler_maruyama(x, sde_drift(x, velocity, coefficients, g), g, dt, z)

    # ----------------------------------------------------------------------------------------------- rewards

    def rewards(self, x0: Tensor) -> Tensor:
        """Rewards ``[N]`` float32 (CPU) of x0 predictions ``[N, ...]``, checked."""
        return checked_rewards(self.reward_fn, x0)

    def score(self, x: Tensor, r: Tensor, x0: Tensor) -> Tensor:
        """:meth:`rewards` of candidates at path times ``r`` ``[N]``, remembering the best one of the run."""
        rewards = self.rewards(x0)
        top = int(rewards.argmax())
        if self.best is None or rewards[top].item() > self.best.reward:
            self.best = Candidate(x[top:top + 1].clone(), float(r[top]), x0[top:top + 1].clone(), rewards[top].item())
        return rewards

    # ------------------------------------------------------------------------------------------ bookkeeping

    def scope(self, name: str) -> None:
        if self.trace is not None:
            self.trace.scope = name

    def record(self, name: str, value: Tensor) -> None:
        if self.trace is not None:
            self.trace.record(name, value)

    def report(self, phase: str, step: int, preview: Tensor | None = None, **fields: object) -> None:
        """A trace row (with NFE used and the best reward so far) and a progress callback previewing ``preview``
        (default: the best x0 prediction so far)."""
        best = self.best.reward if self.best is not None else None
        if self.trace is not None:
            self.trace.row(phase=phase, step=step, nfe=self.nfe, best=best, **fields)
        if self.callback is not None:
            if preview is None and self.best is not None:
                preview = self.best.x0
            self.callback(self.nfe, self.settings.max_nfe, preview)


def checked_rewards(reward: RewardFn, candidates: Tensor) -> Tensor:
    """``reward(candidates)`` as float32 ``[N]`` on the CPU; a clear error for a wrong shape or non-finite values."""
    rewards = reward(candidates)
    if not isinstance(rewards, Tensor) or rewards.shape != (candidates.shape[0],):
        got = tuple(rewards.shape) if isinstance(rewards, Tensor) else type(rewards).__name__
        raise ValueError(f"the reward must return a tensor of shape ({candidates.shape[0]},), got {got}")
    rewards = rewards.detach().to("cpu", torch.float32)
    if not torch.isfinite(rewards).all():
        raise FloatingPointError("the reward returned NaN or infinite values")
    return rewards


def finish(context: SearchContext, chosen: Candidate) -> tuple[Tensor, float, int]:
    """The output ``(x0 [1, ...], reward, finishing NFE)`` of the chosen particle.

    ``official``: its x0 prediction and stored reward (the official loops stop at flow sigma ~0.7 and return this,
    which suits only few-step distilled models). ``ode``: Euler steps of the flow ODE in flow sigma from the
    particle's sigma to 0 (``finish_steps`` even steps; the first reuses the cached prediction, the last lands on
    the final prediction), then the reward of the result.
    """
    if context.settings.finish == "official":
        return chosen.x0, chosen.reward, 0
    before = context.nfe
    sigma, scale = context.interpolant.flow_point(torch.tensor([chosen.r], dtype=torch.float32))
    x = chosen.x / scale.item()
    if sigma.item() == 0.0:  # already at the data end (search_over_paths)
        x0 = x
    else:
        sigmas = uniform_times(sigma.item(), 0.0, context.settings.finish_steps)
        x0 = chosen.x0
        context.scope("finish")
        for k in range(len(sigmas) - 2):
            x = x + (sigmas[k + 1] - sigmas[k]) * (x - x0) / sigmas[k]
            x0 = context.denoise_flow(x, sigmas[k + 1:k + 2])
            context.report("finish", k, preview=x0, sigma=sigmas[k + 1].item())
    return x0, context.rewards(x0).item(), context.nfe - before
