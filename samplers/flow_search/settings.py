"""Settings of a flow search and how its NFE budget is split (the plan), with clear errors for impossible requests.

Defaults follow Kim et al. (arXiv 2503.19385) App. D and the released ``config/*/rbf.yaml`` of
``KAIST-Visual-AI-Group/Flow-Inference-Time-Scaling`` @ b65bb07: 500 NFE, 10 steps, VP-SDE with ``g = 3 r^2``;
RBF 2 chains with an initial best-of-25 each; SVDD 2 chains; Search-over-Paths 2 paths with its ``main.py``
defaults (4 ODE sub-steps, forward 0.78, backward 0.81, seed time 0.12); SMC ``lambda = 0.1`` (paper App. F.2).
Counts left at 0 are derived from the budget, so every method spends (about) the same NFE.

One NFE is one evaluation of one latent by the model, the finishing ODE included; reward evaluations are not counted.
With ``finish='ode'`` the finishing phase's calls (``finish_steps - 1``: its first step reuses the chosen particle's
cached prediction) are reserved out of ``max_nfe`` before the search is planned.
"""

from __future__ import annotations

from dataclasses import dataclass

from .interpolants import INTERPOLANTS, Interpolant
from .sde import DEFAULT_DIFFUSION, DEFAULT_DIFFUSION_NORM, DIFFUSION_COEFFICIENTS

METHODS = ("rbf", "best_of_n", "smc", "svdd", "search_over_paths")
FINISHES = ("ode", "official")


@dataclass(frozen=True)
class SearchSettings:
    """What to search and how (validated on construction; :func:`search_plan` checks the budget)."""

    method: str = "rbf"
    max_nfe: int = 500
    steps: int = 10  # M: denoising steps of the search grid
    interpolant: str = "vp"  # path the SDE runs on: vp (the paper's best) or linear (the model's own)
    sde: bool = True  # False: probability-flow ODE proposals (deterministic given the start)
    diffusion: str = DEFAULT_DIFFUSION
    diffusion_norm: float = DEFAULT_DIFFUSION_NORM
    finish: str = "ode"  # ode: integrate the chosen particle to sigma 0; official: return its x0 prediction
    finish_steps: int = 10  # Euler steps of the finishing ODE, evenly spaced in flow sigma down to 0
    keep_best: bool = False  # choose the best-rewarded particle seen in the whole run
    batch_size: int = 0  # latents per model call; 0: all candidates of a step in one call
    particles: int = 0  # best_of_n / smc population; 0: as many as the budget allows
    chains: int = 2  # rbf / svdd chains, search_over_paths paths
    candidates: int = 0  # svdd proposals per chain and step, search_over_paths copies per path; 0: from budget
    init_particles: int = 25  # rbf: initial noises per chain, the best one starts the chain
    smc_lambda: float = 0.1  # smc potential exp(reward / lambda)
    ess_threshold: float = 1.0  # smc resamples when ESS < threshold * particles (1.0: whenever weights differ)
    sop_ode_steps: int = 4
    sop_forward: float = 0.78  # path time added by each noising jump
    sop_backward: float = 0.81  # path time removed by each ODE run
    sop_seed_time: float = 0.12  # path time the initial ODE runs to

    def __post_init__(self) -> None:
        choices = {"method": (self.method, METHODS), "interpolant": (self.interpolant, INTERPOLANTS),
                   "diffusion": (self.diffusion, DIFFUSION_COEFFICIENTS), "finish": (self.finish, FINISHES)}
        for field, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(f"unknown {field} {value!r}; choose one of {', '.join(allowed)}")
        counts = {"max_nfe": (self.max_nfe, 1), "steps": (self.steps, 2), "finish_steps": (self.finish_steps, 1),
                  "batch_size": (self.batch_size, 0), "particles": (self.particles, 0), "chains": (self.chains, 1),
                  "candidates": (self.candidates, 0), "init_particles": (self.init_particles, 1),
                  "sop_ode_steps": (self.sop_ode_steps, 1)}
        for field, (value, least) in counts.items():
            if int(value) != value or value < least:
                raise ValueError(f"{field} must be an integer >= {least}, got {value}")
        if self.sde and not self.diffusion_norm > 0:
            raise ValueError(f"an SDE needs diffusion_norm > 0, got {self.diffusion_norm} (or set sde=False)")
        if not self.smc_lambda > 0:
            raise ValueError(f"smc_lambda must be > 0, got {self.smc_lambda}")
        if not 0.0 <= self.ess_threshold <= 1.0:
            raise ValueError(f"ess_threshold must be in [0, 1], got {self.ess_threshold}")
        if not 0.0 < self.sop_seed_time < 1.0 or not 0.0 < self.sop_forward < self.sop_backward:
            raise ValueError("search_over_paths needs 0 < sop_seed_time < 1 and 0 < sop_forward < sop_backward "
                             f"(each round must end earlier on the path), got seed {self.sop_seed_time}, "
                             f"forward {self.sop_forward}, backward {self.sop_backward}")


@dataclass(frozen=True)
class SearchPlan:
    """The counts a run uses, derived from the settings, the budget and where the path is entered."""

    particles: int  # best_of_n / smc population, rbf / svdd chains, search_over_paths paths
    candidates: int  # svdd proposals per chain and step, search_over_paths copies per path (else 1)
    init_particles: int  # rbf initial noises per chain (else 1)
    quota: int  # rbf proposals per chain and stage (else 0)
    rounds: int  # search_over_paths noise-and-ODE rounds (else 0)
    search_nfe: int  # budget of the search phase
    finish_nfe: int  # reserved for the finishing ODE
    r_start: float  # path time of the first model query
    shared_start: bool  # all particles start from one given state (sigma_max < 1)


def start_time(interpolant: Interpolant, sigma_max: float) -> float:
    """Path time of the start: 1 (the official start) for pure noise, else the time of ``sigma_max`` (capped at 1:
    the VP time 1 is at flow sigma ~0.9935, so a start above it is treated as the official one)."""
    if not 0.0 < sigma_max <= 1.0:
        raise ValueError(f"sigma_max must be in (0, 1], got {sigma_max}")
    return 1.0 if sigma_max == 1.0 else min(1.0, interpolant.time_of_flow_sigma(sigma_max))


def sop_round_count(settings: SearchSettings, r_start: float) -> int:
    """Rounds until the backward ODE reaches time 0 (official ``ceil(seed / (backward - forward))`` when the
    forward jumps stay below the start)."""
    if not settings.sop_seed_time < r_start:
        raise ValueError(f"search_over_paths seeds at path time {settings.sop_seed_time}, which is not below the "
                         f"start {r_start:.4f}: lower sop_seed_time")
    rounds, time = 0, settings.sop_seed_time
    while time > 0:
        time = max(min(time + settings.sop_forward, r_start) - settings.sop_backward, 0.0)
        rounds += 1
    return rounds


def search_plan(settings: SearchSettings, sigma_max: float = 1.0) -> SearchPlan:
    """Split ``max_nfe`` for ``settings``; raises ``ValueError`` naming what to change when it cannot be done.

    ``sigma_max < 1`` means every particle starts from one given state at that flow sigma, evaluated once.
    """
    r_start = start_time(Interpolant(settings.interpolant), sigma_max)
    shared = sigma_max < 1.0
    method, steps = settings.method, settings.steps
    finishes_already = method == "search_over_paths" and not settings.keep_best  # its ODE ends at time 0
    finish_nfe = settings.finish_steps - 1 if settings.finish == "ode" and not finishes_already else 0
    budget = settings.max_nfe - finish_nfe
    where = f"max_nfe {settings.max_nfe} ({finish_nfe} reserved for the finishing ODE)"

    def start_cost(count: int) -> int:
        return 1 if shared else count

    def need(minimum: int, what: str) -> None:
        if budget < minimum:
            raise ValueError(f"{where} is too small for {method}: {what} needs {minimum} NFE; raise max_nfe or "
                             "lower the counts/steps")

    plan = dict(candidates=1, init_particles=1, quota=0, rounds=0, search_nfe=budget, finish_nfe=finish_nfe,
                r_start=r_start, shared_start=shared)
    if method in ("best_of_n", "smc"):
        # start evaluation, then one evaluation per particle for each of the steps - 1 states before time 0
        per_step = steps - 1
        count = settings.particles or (budget // steps if not shared else (budget - 1) // per_step)
        need(start_cost(max(count, 1)) + per_step * max(count, 1), f"{max(count, 1)} particle(s) x {steps} steps")
        return SearchPlan(particles=count, **plan)
    if method == "svdd":
        chains, per_step = settings.chains, steps - 1
        count = settings.candidates or (budget - start_cost(chains)) // (per_step * chains)
        need(start_cost(chains) + per_step * chains * max(count, 1),
             f"{chains} chain(s) x {max(count, 1)} candidate(s) x {per_step} evaluated steps")
        return SearchPlan(particles=chains, **{**plan, "candidates": count})
    if method == "rbf":
        chains, init = settings.chains, settings.init_particles
        first = start_cost(chains * init)
        need(first + steps * chains, f"the initial selection ({first}) plus one proposal per chain and step")
        quota = (budget - first) // (steps * chains)  # official int((max_nfe - n0 B) / (M B))
        return SearchPlan(particles=chains, **{**plan, "init_particles": init, "quota": quota})
    paths, sub = settings.chains, settings.sop_ode_steps
    rounds = sop_round_count(settings, r_start)
    seed = start_cost(paths) * sub
    count = settings.candidates or (budget - seed) // (rounds * paths * sub)
    need(seed + rounds * paths * max(count, 1) * sub,
         f"the seed ODE ({seed}) plus {rounds} round(s) x {paths} path(s) x {max(count, 1)} copies x {sub} sub-steps")
    return SearchPlan(particles=paths, **{**plan, "candidates": count, "rounds": rounds})

