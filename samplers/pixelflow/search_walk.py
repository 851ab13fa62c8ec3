"""Particles of one image walked through PixelFlow's cascade: the moves every cascade search is made of.

A walk is the sequence of the sampler's Euler steps over all stages (``steps[s]`` per stage, each stage on its own
grid), entered where the cascade is entered (the start, or an image-to-image entry point). One step of a particle:
evaluate the guided velocity at the step's start (one NFE per particle; the x0 prediction comes with it), move to
the step's end, and after a stage's last step enter the next stage (2x nearest upsampling and block-correlated
re-noising, each particle with its own block noise). The final step lands on the image itself, which the reward
judges with no further call, so a trajectory costs exactly one NFE per step, as plain sampling does.

Inside stage ``s`` the state lies on a linear flow path: at local time ``t`` the signal share is
``tau = start_t + t (end_t - start_t)`` and the noise share ``sigma = 1 - tau`` (``cascade.noised_entry``), so with
the stage velocity ``v = dx/dt`` the flow velocity is ``u = dx/dsigma = -v / span`` and the x0 prediction
``x - sigma u = x + sigma v / span``. Stochastic moves are the Euler-Maruyama step of the SDE with the ODE's
marginals on that path (Kim et al., arXiv 2503.19385, Eq. 7-9, here on the linear path with ``g = norm sigma^2``),
reusing :mod:`..flow_search.sde`.

The reward sees every x0 prediction upsampled (bilinear) to the output size, so one reward serves every stage.
Particle 0 of the first move into each stage draws the same noise as plain sampling (the cascade's own draws), so
a search's first candidate is the plain image's twin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ..common import Callback, Trace
from ..flow_search.core import RewardFn, checked_rewards
from ..flow_search.interpolants import linear_coefficients
from ..flow_search.sde import DEFAULT_DIFFUSION, diffusion_coefficient, euler_maruyama, sde_drift
from ..pixels import pixels_to_image
from .cascade import enter_stage, noised_entry, stage_resolution
from .schedule import CascadeSchedule


class RowVelocity(Protocol):
    """A stage velocity that can also evaluate a batch made of chosen conditioning rows (``GuidedVelocity``)."""

    def __call__(self, x: Tensor, timestep: Tensor | float, stage: int) -> Tensor: ...

    def rows(self, rows: Sequence[int]) -> RowVelocity: ...


class SearchNoise(Protocol):
    """The search's own randomness (:class:`.noise.SeededCascadeSearchNoise`)."""

    def gaussian(self, shape: tuple[int, ...]) -> Tensor: ...

    def block(self, stage: int, shape: tuple[int, ...]) -> Tensor: ...

    def ancestors(self, weights: Tensor, count: int) -> Tensor: ...


@dataclass(frozen=True)
class WalkStep:
    """One Euler step of the walk: its stage, model timestep, local time step and signal shares."""

    stage: int
    t: float  # local time at the step's start
    timestep: Tensor  # float64 scalar, the global model timestep at the step's start
    dt: Tensor  # float32 scalar, local time step (float32 differences, as the plain sampler takes them)
    sigma: float  # noise share at the step's start
    sigma_next: float  # noise share at the step's end
    span: float  # end_t - start_t of the stage
    last_in_stage: bool


@dataclass(frozen=True)
class TwinNoise:
    """The plain run's draws for this image: its start noise ``[1, C, h, w]`` and its block noise per stage entered
    later ``{stage: [1, C, H, W]}``."""

    start: Tensor
    blocks: dict[int, Tensor]


class CascadeWalk:
    """The moves, rewards, NFE count and reporting of one image's search through the cascade."""

    def __init__(self, velocity: RowVelocity, item: int, schedule: CascadeSchedule, steps: Sequence[WalkStep],
                 *, twin: TwinNoise, entry: Callable[[Tensor], Tensor], noise: SearchNoise, reward: RewardFn,
                 size: int, diffusion_norm: float, budget: int, callback: Callback | None = None,
                 trace: Trace | None = None) -> None:
        """``entry`` maps start noise ``[N, C, h, w]`` to the states at the first step (the identity at the cascade
        start; image-to-image mixes the image in); ``steps`` run from there to the end."""
        self.velocity, self.item, self.schedule, self.steps = velocity, item, schedule, list(steps)
        self.twin, self.entry, self.noise, self.reward_fn = twin, entry, noise, reward
        self.size, self.diffusion_norm, self.budget = size, diffusion_norm, budget
        self.callback, self.trace = callback, trace
        self.nfe = 0
        self.best_reward: float | None = None
        self.best_image: Tensor | None = None  # [1, size, size, C] in 0..1
        self._per_count: dict[int, RowVelocity] = {}
        self._twin_used: set[int] = set()

    # ------------------------------------------------------------------------------------------------ moves

    def initial(self, count: int) -> Tensor:
        """``count`` particles at the walk's start ``[count, C, h, w]``: particle 0 from the plain run's start noise,
        the rest from fresh noise."""
        start = self.twin.start
        rows = [start]
        if count > 1:
            rows.append(self.noise.gaussian((count - 1, *start.shape[1:])).to(start.device))
        return self.entry(torch.cat(rows))

    def evaluate(self, x: Tensor, index: int) -> tuple[Tensor, Tensor]:
        """Guided stage velocity and x0 prediction of particles ``x`` ``[N, C, h, w]`` at step ``index``'s start;
        one NFE per particle."""
        step = self.steps[index]
        count = x.shape[0]
        velocity = self._per_count.setdefault(count, self.velocity.rows([self.item] * count))
        v = velocity(x, step.timestep, step.stage)  # (N, C, h, w)
        self.nfe += count
        return v, x + (step.sigma / step.span) * v

    def advance(self, x: Tensor, v: Tensor, index: int, *, stochastic: bool) -> Tensor:
        """Move particles ``x`` with velocities ``v`` over step ``index`` (SDE when ``stochastic``, else the
        plain Euler step) and, after a stage's last step, into the next stage."""
        step = self.steps[index]
        if stochastic and step.sigma_next > 0:
            sigma = torch.full((x.shape[0],), step.sigma, dtype=torch.float32, device=x.device)
            d_sigma = torch.full_like(sigma, step.sigma - step.sigma_next)
            g = diffusion_coefficient(sigma, DEFAULT_DIFFUSION, self.diffusion_norm)
            drift = sde_drift(x, -v / step.span, linear_coefficients(sigma), g)
            x = euler_maruyama(x, drift, g, d_sigma, self.noise.gaussian(tuple(x.shape)).to(x.device))
        else:
            x = x + step.dt * v
        if step.last_in_stage and step.stage + 1 < self.schedule.num_stages:
            x = self._enter(x, step.stage + 1)
        return x

    def _enter(self, x: Tensor, stage: int) -> Tensor:
        shape = (x.shape[0], x.shape[1], x.shape[2] * 2, x.shape[3] * 2)
        twin = self.twin.blocks.get(stage)
        if twin is not None and stage not in self._twin_used:  # the first entry: row 0 draws as plain sampling
            self._twin_used.add(stage)
            rows = [twin.to(x.device)]
            if shape[0] > 1:
                rows.append(self.noise.block(stage, (shape[0] - 1, *shape[1:])).to(x.device))
            block = torch.cat(rows)
        else:
            block = self.noise.block(stage, shape).to(x.device)
        return enter_stage(x, stage, self.schedule, block)

    def renoised(self, images: Tensor, index: int) -> Tensor:
        """Clean images ``[N, C, size, size]`` in pixel units noised back to step ``index``'s start with fresh noise:
        the training state there (as image-to-image enters the cascade)."""
        step = self.steps[index]
        side = stage_resolution(self.size, step.stage, self.schedule.num_stages)
        noise = self.noise.gaussian((images.shape[0], images.shape[1], side, side)).to(images.device)
        return noised_entry(images, self.schedule, step.stage, step.t, noise)

    def run(self, x: Tensor, first: int, stop: int, *, stochastic: bool = False) -> Tensor:
        """Advance particles from step ``first`` to step ``stop`` (exclusive), evaluating each step."""
        for index in range(first, stop):
            v, _ = self.evaluate(x, index)
            x = self.advance(x, v, index, stochastic=stochastic)
            self.report("advance", index)
        return x

    # ---------------------------------------------------------------------------------------------- rewards

    def images(self, x0: Tensor) -> Tensor:
        """IMAGE ``[N, size, size, C]`` of x0 predictions (or final states) at any stage's resolution."""
        if x0.shape[-1] != self.size:
            x0 = F.interpolate(x0, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return pixels_to_image(x0)

    def rewards(self, x0: Tensor) -> Tensor:
        """Rewards ``[N]`` float32 (CPU) of x0 predictions or final states, remembering the best image."""
        images = self.images(x0)
        rewards = checked_rewards(self.reward_fn, images)
        top = int(rewards.argmax())
        if self.best_reward is None or rewards[top].item() > self.best_reward:
            self.best_reward, self.best_image = rewards[top].item(), images[top:top + 1]
        return rewards

    # ------------------------------------------------------------------------------------------- reporting

    def report(self, phase: str, index: int, **fields: object) -> None:
        """A trace row (stage, step, NFE used, best reward so far) and a progress callback with the best image."""
        stage = self.steps[min(index, len(self.steps) - 1)].stage
        if self.trace is not None:
            self.trace.row(phase=phase, stage=stage, step=index, nfe=self.nfe, best=self.best_reward, **fields)
        if self.callback is not None:
            self.callback(self.nfe, self.budget, self.best_image)
