"""Best-of-N, SMC and SVDD on the fixed ``exp`` grid, as the official ``GeneralTrainer`` runs them.

Kim et al. (arXiv 2503.19385) §5 and App. D; official ``rbf/general_trainer.py`` with ``RGRPSampler``
(``rbf/corrector/rgrp_sampler.py``) @ b65bb07 (research note §2.1-2.3). The official loop evaluates the model after
every step but the last (to time 0), whose result it discards: the pick is made among the x0 predictions at the last
nonzero time ``r_{M-1}``, so this loop stops there and never draws the unused last noise. It also evaluates the B
chains of SVDD's first step once each instead of K identical copies (same values, fewer NFE).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .core import Candidate, SearchContext
from .noise import FlowSearchNoise
from .grid import exp_grid
from .settings import SearchPlan


def resampling(log_weights: Tensor, threshold: float, noise: FlowSearchNoise) -> tuple[Tensor | None, float]:
    """SMC's resampling decision: the effective sample size ``1 / sum w^2`` of the normalised weights, and ``N``
    ancestors drawn multinomially when it is below ``threshold * N`` (else None)."""
    count = log_weights.shape[0]
    weights = torch.softmax(log_weights, dim=0)
    ess = 1.0 / (weights**2).sum().item()
    return (noise.ancestors(weights, count) if ess < threshold * count else None), ess


def _candidate(x: Tensor, r: Tensor, x0: Tensor, rewards: Tensor, row: int) -> Candidate:
    return Candidate(x[row:row + 1], float(r), x0[row:row + 1], rewards[row].item())


def best_of_n(context: SearchContext, plan: SearchPlan) -> Candidate:
    """N independent trajectories; only their final x0 predictions are scored (official ``bon``)."""
    grid = exp_grid(context.settings.steps, plan.r_start)
    count = plan.particles
    x, velocity, x0 = context.initial(count, grid.times[0].item())
    for k in range(len(grid.steps) - 1):
        context.scope(f"step{k}")
        x = context.propose(x, velocity, grid.times[k].expand(count), grid.steps[k].expand(count))
        velocity, x0 = context.evaluate(x, grid.times[k + 1].expand(count))
        context.report("search", k)
    rewards = context.score(x, grid.times[-2].expand(count), x0)
    chosen = int(rewards.argmax())
    context.record("rewards", rewards)
    context.report("select", len(grid.steps) - 1, rewards=rewards.tolist(), chosen=chosen)
    return _candidate(x, grid.times[-2], x0, rewards, chosen)


def smc(context: SearchContext, plan: SearchPlan) -> Candidate:
    """Sequential Monte Carlo with potentials ``exp(reward / lambda)`` (official ``smc``, DAS-style, non-
    differentiable): before each step, resample the particles multinomially by their accumulated weights when the
    effective sample size is below ``ess_threshold * N``; weights grow by ``exp((r_new - r_parent) / lambda)``.
    Weights are kept as logarithms (the official float64 ``exp`` overflows for large ``reward / lambda``). The pick
    is the particle of largest accumulated weight after the last scored step."""
    settings = context.settings
    grid = exp_grid(settings.steps, plan.r_start)
    count = plan.particles
    x, velocity, x0 = context.initial(count, grid.times[0].item())
    parent_rewards = context.score(x, grid.times[0].expand(count), x0)
    log_weights = parent_rewards.double() / settings.smc_lambda
    for k in range(len(grid.steps) - 1):
        context.scope(f"step{k}")
        ancestors, ess = resampling(log_weights, settings.ess_threshold, context.noise)
        if ancestors is not None:
            rows = ancestors.to(x.device)
            x, velocity, parent_rewards = x[rows], velocity[rows], parent_rewards[ancestors]
            log_weights = torch.zeros_like(log_weights)
        x = context.propose(x, velocity, grid.times[k].expand(count), grid.steps[k].expand(count))
        velocity, x0 = context.evaluate(x, grid.times[k + 1].expand(count))
        rewards = context.score(x, grid.times[k + 1].expand(count), x0)
        log_weights = log_weights + (rewards.double() - parent_rewards.double()) / settings.smc_lambda
        parent_rewards = rewards
        context.record("rewards", rewards)
        context.report("search", k, rewards=rewards.tolist(), ess=ess,
                       chosen=None if ancestors is None else ancestors.tolist())
    chosen = int(log_weights.argmax())
    return _candidate(x, grid.times[-2], x0, parent_rewards, chosen)


def svdd(context: SearchContext, plan: SearchPlan) -> Candidate:
    """B chains; each step every chain proposes K SDE steps and keeps the best-rewarded one (official ``svdd``,
    the ``beta -> 0`` limit of SVDD's soft selection). The pick is the best of the chains' last choices."""
    grid = exp_grid(context.settings.steps, plan.r_start)
    chains, copies = plan.particles, plan.candidates
    x, velocity, x0 = context.initial(chains, grid.times[0].item())
    rewards = torch.empty(0)
    for k in range(len(grid.steps) - 1):
        context.scope(f"step{k}")
        total = chains * copies
        proposals = context.propose(x.repeat_interleave(copies, dim=0), velocity.repeat_interleave(copies, dim=0),
                                    grid.times[k].expand(total), grid.steps[k].expand(total))
        new_velocity, new_x0 = context.evaluate(proposals, grid.times[k + 1].expand(total))
        candidate_rewards = context.score(proposals, grid.times[k + 1].expand(total), new_x0)
        picked = torch.arange(chains) * copies + candidate_rewards.view(chains, copies).argmax(dim=1)  # (B,)
        rows = picked.to(proposals.device)
        x, velocity, x0, rewards = proposals[rows], new_velocity[rows], new_x0[rows], candidate_rewards[picked]
        for name, value in (("proposals", proposals), ("x0", new_x0), ("rewards", candidate_rewards),
                            ("state", x), ("velocity", velocity)):
            context.record(name, value)
        context.report("search", k, rewards=candidate_rewards.tolist(), chosen=picked.tolist())
    return _candidate(x, grid.times[-2], x0, rewards, int(rewards.argmax()))
