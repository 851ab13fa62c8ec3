"""PixelFlow cascade sampling (Chen et al., "PixelFlow: Pixel-Space Generative Models with Flow", 2025): the stage
schedule, re-noising between stages, guidance, per-stage solvers, defaults, and the reward search inside the
cascade.
"""
