"""Sampling algorithms in pure torch (no ComfyUI, no file I/O), one sub-package per algorithm:

- ``pixelflow``: PixelFlow's cascade flow matching (stages, re-noising, guidance, solvers, defaults) and its reward
  search inside the cascade;
- ``flow_search``: inference-time search over a flow model's SDE (interpolants, time grids, Best-of-N / SMC /
  SVDD, Search-over-Paths, Rollover Budget Forcing);
- ``arpg``: ARPG's randomized parallel decoding;
- ``mar``: MAR's masked autoregression with its per-token diffusion head;

and ``common`` for what they share (the callback type, the trace, known tokens, the mask-to-token rule) and
``pixels`` for IMAGE <-> pixel tensor conversion. Every sampler takes an explicit noise source (``<Algorithm>Noise``,
seeded by ``Seeded<Algorithm>Noise``), a callback and an optional trace.
"""
