"""The MAR sampler's defaults: the node's inputs, the evaluation scripts and the benchmarks all read them here.

They are the official demo's (``LTH14/mar`` ``demo/run_mar.ipynb``: 64 iterations, cfg 4 constant, temperature 1,
100 diffusion steps), not the paper's FID settings (256 iterations, linear cfg near 3).
"""

NUM_ITER = 64
CFG = 4.0
CFG_SCHEDULE = "constant"
TEMPERATURE = 1.0
DIFFUSION_STEPS = 100
SIZE = 256
