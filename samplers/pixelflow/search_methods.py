"""The reward searches across PixelFlow's cascade, each on a :class:`.search_walk.CascadeWalk` of one image.

The methods are those of Kim et al. (arXiv 2503.19385, §5 and Alg. 2; official ``rbf/general_trainer.py``,
``rbf/rbf.py``, ``rbf/rewind_trainer.py`` @ b65bb07) and Ma et al. (arXiv 2501.09732, Search over Paths), carried
onto the cascade's steps: the walk's steps replace the single path's grid, a stage change is part of a move, and
the reward reads x0 predictions upsampled to the output size. Every particle exists from the walk's start, but
nothing is selected before the *first scored step* (the first step of the search's first stage): where the reward
cannot read the low-resolution predictions, the particles advance as in plain sampling, each with its own noise.

NFE: one per particle and evaluated step (the final step lands on the image and costs none). With ``K`` steps,
``j0`` unscored steps and budget ``B`` (model calls per image):

- ``best_of_n``: ``N = B // K`` independent trajectories (plain Euler moves), the best final image.
- ``smc``: ``N = B // K`` particles with SDE moves; from ``j0`` on, before each move, weights grow by
  ``exp((r - r_parent) / lambda)`` and the particles are resampled when the effective sample size falls below
  ``ess_threshold N``; the best final image.
- ``svdd``: ``C`` chains; from ``j0`` on each chain makes ``Kc`` SDE proposals per step and keeps the best;
  ``Kc = (B - C (j0 + 1)) // (C (K - 1 - j0))``.
- ``rbf``: ``C`` chains started from the best of ``n0`` particles each (chosen at ``j0``), then per chain and step
  SDE proposals until one beats the chain's best reward (taken at once; the unused quota rolls over to the next
  step) or the step's quota is spent (the step's best proposal is taken); the last proposing step spends whatever is
  left, so the run spends exactly ``B``. Chains split the rest of the budget evenly.
- ``search_over_paths``: ``P`` paths sampled whole; then each round noises every path's image back into the cascade
  at the first scored step (the training state there, as image-to-image enters) and re-runs ``Kc`` copies to the
  end, keeping the best copy; the budget left below one copy's cost re-runs the best image's last steps once, so the
  run spends exactly ``B``.

``best_of_n``, ``smc`` and ``svdd`` leave ``B mod`` (their unit) unspent: with a budget that is a multiple of the
plain NFE they spend it exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..flow_search.particles import resampling
from .search_walk import CascadeWalk

STOCHASTIC_METHODS = ("smc", "svdd", "rbf")  # move by the SDE; best_of_n and search_over_paths by plain Euler


@dataclass(frozen=True)
class CascadePlan:
    """The counts one image's search uses (validated by :func:`cascade_plan`)."""

    method: str
    steps: int  # K: walk steps
    first_scored: int  # j0: the first step whose predictions are scored
    particles: int  # best_of_n / smc particles, svdd / rbf chains, search_over_paths paths
    candidates: int = 1  # svdd proposals per chain and step, search_over_paths copies per path and round
    init_particles: int = 1  # rbf particles per chain before the first scored step
    smc_lambda: float = 0.1
    ess_threshold: float = 1.0
    budget: int = 0  # B


Method = Callable[[CascadeWalk, CascadePlan], tuple[Tensor, float]]


def _pick(walk: CascadeWalk, x: Tensor, phase: str, index: int) -> tuple[Tensor, float]:
    """The best-rewarded of final images ``x`` ``[N, C, H, W]`` and its reward."""
    rewards = walk.rewards(x)
    chosen = int(rewards.argmax())
    walk.report(phase, index, rewards=rewards.tolist(), chosen=chosen)
    return x[chosen:chosen + 1], rewards[chosen].item()


def best_of_n(walk: CascadeWalk, plan: CascadePlan) -> tuple[Tensor, float]:
    x = walk.run(walk.initial(plan.particles), 0, plan.steps)
    return _pick(walk, x, "select", plan.steps)


def smc(walk: CascadeWalk, plan: CascadePlan) -> tuple[Tensor, float]:
    count = plan.particles
    x = walk.run(walk.initial(count), 0, plan.first_scored, stochastic=True)
    log_weights = parent = None
    for index in range(plan.first_scored, plan.steps):
        velocity, x0 = walk.evaluate(x, index)
        rewards = walk.rewards(x0)
        gain = rewards if parent is None else rewards - parent
        log_weights = gain.double() / plan.smc_lambda + (0 if log_weights is None else log_weights)
        parent = rewards
        ancestors, ess = resampling(log_weights, plan.ess_threshold, walk.noise)
        if ancestors is not None:
            rows = ancestors.to(x.device)
            x, velocity, parent = x[rows], velocity[rows], parent[ancestors]
            log_weights = torch.zeros_like(log_weights)
        x = walk.advance(x, velocity, index, stochastic=True)
        walk.report("search", index, rewards=rewards.tolist(), ess=ess,
                    chosen=None if ancestors is None else ancestors.tolist())
    return _pick(walk, x, "select", plan.steps)


def svdd(walk: CascadeWalk, plan: CascadePlan) -> tuple[Tensor, float]:
    chains, copies, last = plan.particles, plan.candidates, plan.steps - 1
    x = walk.run(walk.initial(chains), 0, plan.first_scored)
    velocity, _ = walk.evaluate(x, plan.first_scored)
    for index in range(plan.first_scored, last):
        proposals = walk.advance(x.repeat_interleave(copies, dim=0), velocity.repeat_interleave(copies, dim=0),
                                 index, stochastic=True)
        new_velocity, x0 = walk.evaluate(proposals, index + 1)
        rewards = walk.rewards(x0)
        picked = torch.arange(chains) * copies + rewards.view(chains, copies).argmax(dim=1)  # (C,)
        rows = picked.to(x.device)
        x, velocity = proposals[rows], new_velocity[rows]
        walk.report("search", index, rewards=rewards.tolist(), chosen=picked.tolist())
    return _pick(walk, walk.advance(x, velocity, last, stochastic=False), "select", plan.steps)


def rollover_budget_forcing(walk: CascadeWalk, plan: CascadePlan) -> tuple[Tensor, float]:
    chains, init, first, last = plan.particles, plan.init_particles, plan.first_scored, plan.steps - 1
    pool = walk.run(walk.initial(chains * init), 0, first)
    pool_velocity, pool_x0 = walk.evaluate(pool, first)
    pool_rewards = walk.rewards(pool_x0)
    picked = torch.arange(chains) * init + pool_rewards.view(chains, init).argmax(dim=1)  # (C,)
    walk.report("init", first, rewards=pool_rewards.tolist(), chosen=picked.tolist())
    rows = picked.to(pool.device)
    x, velocity, best = pool[rows], pool_velocity[rows], pool_rewards[picked].clone()  # (C, ...), (C,)
    left = plan.budget - walk.nfe
    budget = torch.tensor([left // chains + (chain < left % chains) for chain in range(chains)])  # (C,) per chain
    quota = budget // (last - first)
    carried = torch.zeros(chains, dtype=torch.long)
    for index in range(first, last):
        x, velocity, used, rolled = _rbf_step(walk, x, velocity, best, index, last, quota + carried, budget)
        carried = torch.where(rolled, quota + carried - used, 0)
        budget -= used
        walk.report("search", index, proposals=used.tolist(), best_rewards=best.tolist(),
                    chosen=["rollover" if r else "forced" for r in rolled.tolist()])
    return _pick(walk, walk.advance(x, velocity, last, stochastic=False), "select", plan.steps)


def _rbf_step(walk: CascadeWalk, x: Tensor, velocity: Tensor, best: Tensor, index: int, last: int, allowance: Tensor,
              budget: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One step of every chain, in lockstep: each active chain proposes once per round (one batched call) until a
    proposal beats its best reward (rollover, taken at once; ``best`` is updated in place) or its allowance is spent
    (forced: the step's best proposal). Every later step keeps at least one proposal of the chain's budget, and the
    last proposing step spends all of it. Returns the chosen states and velocities, proposals used and rollovers."""
    chains = x.shape[0]
    later = last - 1 - index
    allowed = budget - later if index == last - 1 else torch.minimum(allowance, budget - later)  # (C,)
    used = torch.zeros(chains, dtype=torch.long)
    rolled = torch.zeros(chains, dtype=torch.bool)
    top = torch.full((chains,), float("-inf"))
    chosen_x = chosen_velocity = None  # (C, ...) at the step's end (a stage change doubles the side)
    active = used < allowed  # every chain: the plan leaves each at least one proposal per step
    while active.any():
        rows = active.nonzero().squeeze(1)  # (A,)
        on_device = rows.to(x.device)
        proposals = walk.advance(x[on_device], velocity[on_device], index, stochastic=True)
        new_velocity, x0 = walk.evaluate(proposals, index + 1)
        rewards = walk.rewards(x0)  # (A,)
        if chosen_x is None:
            chosen_x, chosen_velocity = proposals.clone(), new_velocity.clone()
        used[rows] += 1
        better = rewards > top[rows]
        top[rows[better]] = rewards[better]
        taken = better.to(x.device)
        chosen_x[on_device[taken]], chosen_velocity[on_device[taken]] = proposals[taken], new_velocity[taken]
        rollover = (rewards > best[rows]) & (index < last - 1)
        rolled[rows[rollover]] = True
        best[rows[rollover]] = rewards[rollover]
        active[rows] = ~rollover & (used[rows] < allowed[rows])
    return chosen_x, chosen_velocity, used, rolled


def search_over_paths(walk: CascadeWalk, plan: CascadePlan) -> tuple[Tensor, float]:
    paths, copies, first = plan.particles, plan.candidates, plan.first_scored
    images = walk.run(walk.initial(paths), 0, plan.steps)  # (P, C, H, W)
    rewards = walk.rewards(images)
    walk.report("seed", plan.steps, rewards=rewards.tolist())
    cost = plan.steps - first
    remaining = (plan.budget - walk.nfe) // cost
    round_index = 0
    while remaining > 0:
        counts = [min(copies, max(0, remaining - path * copies)) for path in range(paths)]  # this round's copies
        sources = torch.cat([images[path:path + 1].expand(count, -1, -1, -1) for path, count in enumerate(counts)])
        finals = walk.run(walk.renoised(sources, first), first, plan.steps)
        final_rewards = walk.rewards(finals)
        offset = 0
        for path, count in enumerate(counts):
            if count:
                top = offset + int(final_rewards[offset:offset + count].argmax())
                images[path], rewards[path] = finals[top], final_rewards[top]
                offset += count
        remaining -= sum(counts)
        walk.report("search", round_index, rewards=final_rewards.tolist(), chosen=counts)
        round_index += 1
    polish = plan.budget - walk.nfe  # below one copy's cost: re-run the best image's last steps once
    if polish > 0:
        best = int(rewards.argmax())
        start = plan.steps - polish
        final = walk.run(walk.renoised(images[best:best + 1], start), start, plan.steps)
        reward = walk.rewards(final)
        if reward.item() > rewards[best].item():
            images[best], rewards[best] = final[0], reward[0]
        walk.report("polish", start, rewards=reward.tolist())
    chosen = int(rewards.argmax())
    return images[chosen:chosen + 1], rewards[chosen].item()


SEARCH_METHODS: dict[str, Method] = {
    "rbf": rollover_budget_forcing, "best_of_n": best_of_n, "smc": smc, "svdd": svdd,
    "search_over_paths": search_over_paths,
}
