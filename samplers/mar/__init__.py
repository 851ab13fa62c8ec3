"""MAR masked autoregression with a per-token diffusion head (Li et al., "Autoregressive Image Generation without
Vector Quantization", 2024): the loop, the diffusion head schedule, noise and defaults.
"""
