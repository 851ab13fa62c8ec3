"""Search over Paths as the official ``RewindTrainer``.

Ma et al., "Inference-Time Scaling for Diffusion Models beyond Scaling Denoising Steps" (arXiv 2501.09732), as
re-implemented for flows by Kim et al. (arXiv 2503.19385) App. D; official ``rbf/rewind_trainer.py`` and
``FluxPrior.solve_ode`` (``rbf/prior/flux.py``) @ b65bb07 (research note §2.5).

N paths are integrated with the ODE (Euler, ``sop_ode_steps`` sub-steps) to the seed time; then each round copies
every path K times, jumps each copy forward (noisier) by ``sop_forward`` with the path's own forward kernel
``x <- (alpha_f / alpha_b) x + sqrt(sigma_f^2 - (alpha_f / alpha_b)^2 sigma_b^2) z``, integrates back by
``sop_backward`` with the ODE, scores the x0 prediction of the last sub-step's start, and keeps each path's best copy.
Path times here are linear (no ``exp`` map), as in the official code. Beyond it: a forward jump never goes past the
start time (only reachable when the search enters the path part-way). A candidate's x0 prediction is the one of its
last sub-step's start, so ``keep_best`` finishes a mid-run candidate from that slightly earlier prediction.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .core import Candidate, SearchContext
from .grid import uniform_times
from .interpolants import per_sample
from .settings import SearchPlan


def path_ode(context: SearchContext, x: Tensor, start: float, stop: float,
             cached: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
    """Euler on the search path from ``start`` to ``stop`` in ``sop_ode_steps`` even sub-steps: the state at
    ``stop`` and the x0 prediction at the last sub-step's start. ``cached`` (velocity, x0) may give the first."""
    times = uniform_times(start, stop, context.settings.sop_ode_steps)
    count = x.shape[0]
    for k in range(len(times) - 1):
        if k or cached is None:
            velocity, x0 = context.evaluate(x, times[k].expand(count))
        else:
            velocity, x0 = cached
        x = x - per_sample((times[k] - times[k + 1]).expand(count).to(x.device), x) * velocity
    return x, x0


def forward_kernel(context: SearchContext, x: Tensor, start: float, stop: float) -> Tensor:
    """Noise states at path time ``start`` to the later time ``stop`` (the path's own marginal transition)."""
    here, there = (context.interpolant.coefficients(torch.tensor([t], dtype=torch.float32)) for t in (start, stop))
    ratio = (there.alpha / here.alpha).item()
    spread = (there.sigma**2 - ratio**2 * here.sigma**2).clamp(min=0).sqrt().item()
    return ratio * x + spread * context.noise.renoise(tuple(x.shape)).to(x.device)


def search_over_paths(context: SearchContext, plan: SearchPlan) -> Candidate:
    settings = context.settings
    paths, copies = plan.particles, plan.candidates
    seeds = 1 if plan.shared_start else paths  # identical starts follow one deterministic ODE path
    context.scope("seed")
    x, velocity, x0 = context.initial(seeds, plan.r_start)
    x, _ = path_ode(context, x, plan.r_start, settings.sop_seed_time, (velocity, x0))
    x = x.expand(paths, *x.shape[1:]) if seeds == 1 else x
    context.report("seed", 0, time=settings.sop_seed_time)
    time = settings.sop_seed_time  # plan.rounds >= 1, so every pick below is made in the loop
    for round_index in range(plan.rounds):
        context.scope(f"step{round_index}")
        noisy_time = min(time + settings.sop_forward, plan.r_start)
        copies_x = forward_kernel(context, x.repeat_interleave(copies, dim=0), time, noisy_time)
        time = max(noisy_time - settings.sop_backward, 0.0)
        copies_x, copies_x0 = path_ode(context, copies_x, noisy_time, time)
        total = paths * copies
        candidate_rewards = context.score(copies_x, torch.full((total,), time), copies_x0)
        picked = torch.arange(paths) * copies + candidate_rewards.view(paths, copies).argmax(dim=1)  # (N,)
        rows = picked.to(copies_x.device)
        x, x0, rewards = copies_x[rows], copies_x0[rows], candidate_rewards[picked]
        context.record("rewards", candidate_rewards)
        context.report("search", round_index, rewards=candidate_rewards.tolist(), chosen=picked.tolist(), time=time)
    chosen = int(rewards.argmax())
    return Candidate(x[chosen:chosen + 1], time, x0[chosen:chosen + 1], rewards[chosen].item())
