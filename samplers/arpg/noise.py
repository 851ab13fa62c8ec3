"""Where ARPG's randomness comes from: the generation order and one uniform number per sampled token.

The sampler takes any object with these two methods, so parity tests can replay the draws recorded from an
official run. The official ``generate`` draws ``torch.rand(L).argsort()`` for the order (shared by the batch) and
then calls ``torch.multinomial`` each step; here every token is drawn by inverse-CDF sampling from a uniform,
which has the same distribution, runs on any device without a host sync, and lets recorded draws reproduce the
official tokens exactly. :class:`SeededARPGNoise` is the normal source: every uniform comes from one CPU generator
seeded by the user's seed, so the same seed gives the same order and tokens on every device.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class ARPGNoise(Protocol):
    def order_uniforms(self, count: int) -> Tensor:
        """(count,) float uniforms; their ``argsort`` is the order in which the unknown positions are decoded."""

    def token_uniforms(self, shape: tuple[int, int]) -> Tensor:
        """(B, n) float uniforms in [0, 1), one per token decoded this step."""


class SeededARPGNoise:
    """All draws from one ``torch.Generator`` on the CPU seeded with ``seed``."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator("cpu").manual_seed(seed)

    def order_uniforms(self, count: int) -> Tensor:
        return torch.rand(count, generator=self.generator)

    def token_uniforms(self, shape: tuple[int, int]) -> Tensor:
        return torch.rand(shape, generator=self.generator)


def sample_tokens(probs: Tensor, uniforms: Tensor) -> Tensor:
    """Inverse-CDF sampling: the first token whose cumulative probability exceeds ``u * total``.

    ``probs`` (B, n, V), ``uniforms`` (B, n) in [0, 1) -> tokens (B, n) int64. The cumulative sum is float64 (float32
    on MPS, which has no float64) so tokens of tiny probability keep their own interval.
    """
    dtype = torch.float32 if probs.device.type == "mps" else torch.float64
    cdf = probs.to(dtype).cumsum(dim=-1)  # (B, n, V)
    threshold = uniforms.to(device=cdf.device, dtype=dtype)[..., None] * cdf[..., -1:]  # (B, n, 1)
    return torch.searchsorted(cdf, threshold, right=True).squeeze(-1).clamp_max(probs.shape[-1] - 1)
