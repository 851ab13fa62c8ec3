"""ARPG randomized parallel decoding (Li et al., "Autoregressive Image Generation with Randomized Parallel Decoding",
2025): decode loop, step and guidance schedules, logit filters, noise.
"""
