"""Sinusoidal embeddings of scalar inputs (diffusion timesteps, PixelFlow's latent size).

One formula covers both official variants; they differ only in the frequency denominator:

* PixelFlow (diffusers ``Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)``, used for the timestep
  and for the token-grid side): ``f_j = exp(-ln(10000) * j / (half - 1))``;
* MAR's diffusion head (``TimestepEmbedder`` in ``models/diffloss.py``, DiT style): ``f_j = exp(-ln(10000) * j / half)``.

Both put cosines first. Frequencies and angles are computed in float32 as the official code does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def sinusoidal_embedding(
    values: Tensor,
    dim: int,
    *,
    max_period: float = 10000.0,
    frequency_shift: float = 0.0,
    cos_first: bool = True,
) -> Tensor:
    """Embed ``values`` (B,) into (B, dim) as ``[cos(v*f), sin(v*f)]`` (or sin first), zero-padded when dim is odd.

    ``f_j = exp(-ln(max_period) * j / (dim//2 - frequency_shift))``: shift 1 gives PixelFlow's, 0 gives MAR's.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=values.device)
    freqs = torch.exp(exponent / (half - frequency_shift))  # (half,)
    angles = values.float()[:, None] * freqs[None, :]  # (B, half)
    parts = [angles.cos(), angles.sin()] if cos_first else [angles.sin(), angles.cos()]
    embedding = torch.cat(parts, dim=-1)  # (B, 2*half)
    if dim % 2:
        embedding = torch.nn.functional.pad(embedding, (0, 1))
    return embedding
