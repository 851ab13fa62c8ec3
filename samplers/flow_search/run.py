"""Reward search for any flow model: one call gives one output for one target.

Kim et al., "Inference-Time Scaling for Flow Models via Stochastic Generation and Rollover Budget Forcing" (arXiv
2503.19385); official ``KAIST-Visual-AI-Group/Flow-Inference-Time-Scaling`` @ b65bb07 (``rbf/rbf.py``,
``rbf/general_trainer.py``, ``rbf/rewind_trainer.py``). The model is a ComfyUI-style denoiser (x0 prediction on the
linear path at flow sigma), the reward scores x0 predictions. Faithful by default in everything but the ending:

- ``finish='ode'`` (default) integrates the chosen particle to sigma 0 with the flow ODE, whereas the official
  loops return its x0 prediction at the last searched time (flow sigma ~0.7 with 10 steps), which only few-step
  distilled models (FLUX-schnell) turn into a sharp image; ``finish='official'`` keeps that behaviour.
- ``keep_best`` picks the best-rewarded particle of the whole run instead of the method's own final pick.
- ``batch_size`` groups the candidates of a step into model calls of that many latents.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..common import Trace
from .core import Callback, Candidate, Denoiser, RewardFn, SearchContext, finish
from .noise import FlowSearchNoise
from .particles import best_of_n, smc, svdd
from .rbf import rollover_budget_forcing
from .settings import SearchPlan, SearchSettings, search_plan
from .sop import search_over_paths

SEARCHES: dict[str, Callable[[SearchContext, SearchPlan], Candidate]] = {
    "rbf": rollover_budget_forcing, "best_of_n": best_of_n, "smc": smc, "svdd": svdd,
    "search_over_paths": search_over_paths,
}


@dataclass(frozen=True)
class SearchResult:
    """The output in the model's clean space, its reward and the NFE spent (``finish_nfe`` of them finishing)."""

    x0: Tensor  # [1, ...]
    reward: float
    nfe: int
    finish_nfe: int
    trace: Trace | None


def run_search(
    denoise: Denoiser,
    reward: RewardFn,
    shape: tuple[int, ...],
    settings: SearchSettings,
    noise: FlowSearchNoise,
    *,
    first_latent: Tensor | None = None,
    sigma_max: float = 1.0,
    device: torch.device | str | None = None,
    callback: Callback | None = None,
    trace: Trace | None = None,
) -> SearchResult:
    """Search for one sample of per-sample ``shape`` (no batch dimension) that the reward likes.

    ``first_latent`` ``[1, *shape]``: with ``sigma_max = 1`` the initial noise of particle 0 (the others are drawn
    from ``noise``); with ``sigma_max < 1`` it is required and is the state every particle starts from, on the flow
    path at flow sigma ``sigma_max`` (image-to-image, a cascade stage). States live on ``first_latent``'s device,
    else ``device`` (default CPU), in float32. ``callback(nfe, max_nfe, preview)`` is called after every search step
    and finishing step; ``trace`` receives per-step rows and tensors.
    """
    shape = tuple(int(size) for size in shape)
    if first_latent is not None:
        if tuple(first_latent.shape) != (1, *shape):
            raise ValueError(f"first_latent must have shape {(1, *shape)}, got {tuple(first_latent.shape)}")
        first_latent = first_latent.float()
        device = first_latent.device
    elif sigma_max < 1.0:
        raise ValueError(f"a search that starts part-way (sigma_max {sigma_max} < 1) needs first_latent, the state "
                         "at that sigma")
    plan = search_plan(settings, sigma_max)
    start = first_latent if plan.shared_start else None
    context = SearchContext(denoise, reward, settings, noise, shape, torch.device(device or "cpu"),
                            start=start, first_latent=None if plan.shared_start else first_latent,
                            callback=callback, trace=trace)
    with torch.no_grad():
        chosen = SEARCHES[settings.method](context, plan)
        if settings.keep_best and context.best is not None:
            chosen = context.best
        x0, final_reward, finish_nfe = finish(context, chosen)
    return SearchResult(x0, final_reward, context.nfe, finish_nfe, trace)
