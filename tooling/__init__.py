"""What the training scripts, the benchmarks and the demo share, so that they import one spine and never each other.

- ``world``: the procedural shapes world (seeded samples, batches);
- ``accuracy``: class and count accuracy by the shapes analyser;
- ``pixelflow_eval``, ``mar_eval``, ``arpg_eval``: sample a built-in model at the sampler's defaults and measure it
  (also command-line evaluations, ``python -m flowar.tooling.<family>_eval``);
- ``pixelflow_sampling``, ``mar_sampling``, ``arpg_sampling``: one benchmark or demo sample per seed, as the sampler
  nodes draw it;
- ``report``: Wilson intervals, PNG and manifest writing;
- ``toy_flow``: an exact Gaussian-mixture flow with a closed-form velocity, for search tests and benchmarks.

Never imported by the nodes; imports only the run-time layers below it.
"""
