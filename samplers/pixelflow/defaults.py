"""The PixelFlow sampler's defaults and seeding policy: the node's inputs, the evaluation scripts and the benchmarks
all read them here, so a changed default changes every one of them at once.

Steps, guidance and solver follow the official demo (``ShoufaChen/PixelFlow`` ``app.py``: 10 steps per stage, cfg 4,
Euler); the search defaults are the pack's own (Rollover Budget Forcing across the cascade, selecting from stage 1).
"""

STEPS_PER_STAGE = 10
CFG = 4.0
CFG_SCHEDULE = "official"
SHIFT = 1.0
SOLVER = "euler"
SIZE = 256
STRENGTH = 0.6  # image-to-image: the share of the cascade that is regenerated
SEARCH_METHOD = "rbf"
SEARCH_MAX_NFE = 160  # 4x a plain image at the default 4 stages x 10 steps
SEARCH_STEPS = 10
SEARCH_FIRST_STAGE = 1  # where a cascade search starts selecting (measured: README, "Search offline")
SEARCH_DIFFUSION_NORM = 3.0  # SDE moves of the stochastic cascade searches: g = norm sigma^2
SEARCH_SEED_SALT = 0x5EA2C4  # a reward search draws from seed ^ this: its own stream, not a copy of the cascade's
