"""Reward search inside PixelFlow's cascade: a stage solver that runs :func:`run_search` on the final stage.

A PixelFlow stage is integrated in its own local time ``t`` (0 = the stage's noisy start, 1 = its clean end) with
``dx/dt = v``; on the original time axis (0 = noise, 1 = data) the stage covers ``tau = start_t + t (end_t -
start_t)``. The search's linear path is ComfyUI's ``x = (1 - sigma) x0 + sigma eps``, so ``sigma = 1 - tau`` and the
flow velocity ``dx/dsigma = -v / (end_t - start_t)``; the denoiser handed to the search is therefore
``D = x - sigma u = x + sigma v / (end_t - start_t)``, with the model queried at the global timestep of the local
time (clamped to the stage's timestep window, as the Euler grid's last step is). Each image of the batch is searched
on its own, from the state the cascade enters the stage with, and its reward sees ``[N, H, W, C]`` images in 0..1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import Tensor

from ..flow_search.core import RewardFn
from ..flow_search.noise import FlowSearchNoise
from ..flow_search.run import run_search
from ..flow_search.settings import SearchSettings
from ..pixels import pixels_to_image
from .schedule import CascadeSchedule
from .stage import StageProblem, StageSolver


class RowVelocity(Protocol):
    """A stage velocity that can also evaluate a batch made of chosen conditioning rows (``GuidedVelocity``)."""

    def __call__(self, x: Tensor, timestep: Tensor | float, stage: int) -> Tensor: ...

    def rows(self, rows: Sequence[int]) -> RowVelocity: ...


def search_stage_solver(settings: SearchSettings, reward_on_images: RewardFn, schedule: CascadeSchedule,
                        noise: FlowSearchNoise) -> StageSolver:
    """A :data:`StageSolver` for the cascade's final stage that returns, per image, the search's output.

    ``reward_on_images`` maps images ``[N, H, W, C]`` in 0..1 to rewards ``[N]``; ``noise`` feeds every search of the
    run in turn (one per image). The stage's velocity must offer ``rows`` (see :class:`RowVelocity`).
    """

    def reward(x0: Tensor) -> Tensor:
        return reward_on_images(pixels_to_image(x0))

    def solve(problem: StageProblem) -> Tensor:
        stage = problem.stage
        if stage != schedule.num_stages - 1:
            raise ValueError(f"reward search runs in the final stage ({schedule.num_stages - 1}), not stage {stage}: "
                             "its x0 prediction is the image the reward must judge")
        rows = getattr(problem.velocity, "rows", None)
        if not callable(rows):
            raise TypeError("reward search needs a stage velocity with a rows() method (e.g. GuidedVelocity) to "
                            "evaluate many particles of one image")
        start_t, span = schedule.start_t[stage], schedule.end_t[stage] - schedule.start_t[stage]
        sigma_max = 1.0 - (start_t + problem.t[0].item() * span)
        batch = problem.x.shape[0]
        outputs = []
        for item in range(batch):
            per_count: dict[int, RowVelocity] = {}

            def denoise(x: Tensor, sigma: Tensor, item: int = item, per_count: dict = per_count) -> Tensor:
                count = x.shape[0]
                velocity = per_count.setdefault(count, rows([item] * count))
                local_t = ((1.0 - sigma.double()) - start_t) / span
                timesteps = problem.timestep_at(local_t.clamp(max=problem.window_end))  # (N,) float64
                v = velocity(x, timesteps.float(), stage)  # (N, C, H, W): dx/dt in local time
                return x + sigma.reshape(-1, 1, 1, 1) * v / span

            def progress(nfe: int, total: int, preview: Tensor | None, item: int = item) -> None:
                state = preview if preview is not None else problem.x[item:item + 1]
                problem.report(state, (item + nfe / total) / batch)

            result = run_search(denoise, reward, tuple(problem.x.shape[1:]), settings, noise,
                                first_latent=problem.x[item:item + 1], sigma_max=min(sigma_max, 1.0),
                                callback=progress, trace=problem.trace)
            outputs.append(result.x0)
        return torch.cat(outputs)

    return solve
