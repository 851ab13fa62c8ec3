"""Rollover Budget Forcing exactly as the official loop, vectorised over chains.

Kim et al. (arXiv 2503.19385) Alg. 2; official ``RBF.train_single_step`` / ``RBF.train`` in ``rbf/rbf.py`` and
``RGRPSampler.pre_correct`` in ``rbf/corrector/rgrp_sampler.py`` @ b65bb07 (research note §2.6).

Each chain starts from the best of ``init_particles`` noises, then every call proposes one SDE step per chain from
its current state (counter ``s`` to ``s - start/M``, cached velocity). A proposal whose reward beats the chain's best
so far is taken at once (rollover) and the chain's unused proposals carry over to the next stage's quota; when a
stage's quota is used up the chain is forced to its stage-best proposal. Chains stop advancing after ``M - 2``
advances, and the last stage takes whatever budget is left. The pick at the end is the stage-best of the chain whose
current-stage best reward is highest (not the overall best; ``keep_best`` changes that).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .core import UNSET_REWARD, Candidate, SearchContext
from .grid import counter_start, counter_step, exp_time, step_between
from .settings import SearchPlan


class StageBest:
    """Per chain: the best proposal of the current stage (state, velocity, x0, time, reward)."""

    def __init__(self, x: Tensor, velocity: Tensor, x0: Tensor, r: Tensor) -> None:
        self.x, self.velocity, self.x0, self.r = x.clone(), velocity.clone(), x0.clone(), r.clone()
        self.reward = torch.full((x.shape[0],), UNSET_REWARD, dtype=torch.float32)

    def take(self, better: Tensor, x: Tensor, velocity: Tensor, x0: Tensor, r: Tensor, reward: Tensor) -> None:
        rows = better.to(x.device)
        self.x[rows], self.velocity[rows], self.x0[rows] = x[rows], velocity[rows], x0[rows]
        self.r[better], self.reward[better] = r[better], reward[better]


def rollover_budget_forcing(context: SearchContext, plan: SearchPlan) -> Candidate:
    steps, chains, init = context.settings.steps, plan.particles, plan.init_particles
    start = counter_start(plan.r_start)
    counter = torch.full((chains,), start, dtype=torch.float32)  # linear counter in thousandths, per chain
    r0 = exp_time(counter[:1])

    context.scope("step0")
    pool_x, pool_velocity, pool_x0 = context.initial(chains * init, r0.item())  # (B*n0, ...), chain b owns a block
    pool_rewards = context.score(pool_x, r0.expand(chains * init), pool_x0)
    context.record("init.rewards", pool_rewards)
    picked = torch.arange(chains) * init + pool_rewards.view(chains, init).argmax(dim=1)  # (B,)
    rows = picked.to(pool_x.device)
    x, velocity = pool_x[rows], pool_velocity[rows]
    best = pool_rewards[picked].clone()  # running best reward per chain: the rollover threshold
    stage = StageBest(x, velocity, pool_x0[rows], r0.expand(chains))
    budget_counter = torch.ones(chains, dtype=torch.int32)  # proposals made in the current stage, plus one
    step_counter = torch.zeros(chains, dtype=torch.int32)
    default_quota = plan.quota
    quota = torch.full((chains,), default_quota, dtype=torch.int32)

    call = 0
    while context.nfe + chains < plan.search_nfe:  # official: stop when nfe + B >= max_nfe
        context.scope(f"step{call}")
        following = counter_step(counter, start, steps)
        r, r_next, dt = step_between(counter, following)
        proposals = context.propose(x, velocity, r, dt)
        new_velocity, new_x0 = context.evaluate(proposals, r_next)
        rewards = context.score(proposals, r_next, new_x0)

        rollover = best < rewards
        proceed = step_counter < steps - 2
        forced = (budget_counter % quota == 0) & ~rollover & proceed
        stage.take(stage.reward < rewards, proposals, new_velocity, new_x0, r_next, rewards)
        best = torch.where(rollover, rewards, best)

        advance = rollover & proceed
        on_device = advance.to(x.device)
        counter[advance] = following[advance]
        x[on_device], velocity[on_device] = proposals[on_device], new_velocity[on_device]
        quota[advance] = quota[advance] - budget_counter[advance] + default_quota  # carry the unused quota
        on_device = forced.to(x.device)
        counter[forced] = following[forced]
        x[on_device], velocity[on_device] = stage.x[on_device], stage.velocity[on_device]
        quota[forced] = default_quota
        moved = advance | forced
        budget_counter[moved] = 0
        step_counter[moved] += 1
        stage.reward[moved] = UNSET_REWARD
        budget_counter += 1

        for name, value in (("proposals", proposals), ("x0", new_x0), ("rewards", rewards), ("state", x),
                            ("velocity", velocity), ("counter", counter), ("step_counter", step_counter),
                            ("budget_counter", budget_counter), ("quota", quota)):
            context.record(name, value)
        decisions = ["rollover" if a else "forced" if f else "stay" for a, f in zip(advance.tolist(), forced.tolist())]
        context.report("search", call, rewards=rewards.tolist(), chosen=decisions, times=exp_time(counter).tolist())
        call += 1

    chain = int(stage.reward.argmax())
    return Candidate(stage.x[chain:chain + 1], float(stage.r[chain]), stage.x0[chain:chain + 1],
                     stage.reward[chain].item())
