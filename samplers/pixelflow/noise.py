"""Where the cascade's randomness comes from: fresh Gaussian noise and 2x2 block noise at each stage change.

The cascade sampler takes any object with these two methods, so parity tests can replay the official run's recorded
draws. :class:`SeededPixelFlowNoise` is the normal source: every draw comes, in a fixed order, from one CPU generator
seeded by the user's seed, so the same seed gives the same image on every device.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ...kernels.block_noise import block_cholesky, block_count, correlate_blocks
from .schedule import DEFAULT_GAMMA


class PixelFlowNoise(Protocol):
    def gaussian(self, shape: tuple[int, ...]) -> Tensor:
        """I.i.d. N(0, 1) noise of ``shape``: the starting point (or the img2img noise)."""

    def block(self, stage: int, shape: tuple[int, ...]) -> Tensor:
        """Block-correlated noise ``[B, C, H, W]`` for entering ``stage``."""


class SeededPixelFlowNoise:
    """All draws from one ``torch.Generator`` on the CPU seeded with ``seed``."""

    def __init__(self, seed: int, gamma: float = DEFAULT_GAMMA) -> None:
        self.generator = torch.Generator("cpu").manual_seed(seed)
        self.cholesky = block_cholesky(gamma)  # (4, 4)

    def gaussian(self, shape: tuple[int, ...]) -> Tensor:
        return torch.randn(shape, generator=self.generator, dtype=torch.float32)

    def block(self, stage: int, shape: tuple[int, ...]) -> Tensor:
        eps = torch.randn(block_count(shape), 4, generator=self.generator, dtype=torch.float32)  # (blocks, 4)
        return correlate_blocks(eps, self.cholesky, shape)


class SeededCascadeSearchNoise(SeededPixelFlowNoise):
    """A cascade search's own draws (fresh starts, block noise, SDE steps, resampling), all from one generator."""

    def ancestors(self, weights: Tensor, count: int) -> Tensor:
        """``count`` int64 indices drawn with replacement with probabilities ``weights`` (SMC resampling)."""
        return torch.multinomial(weights, count, replacement=True, generator=self.generator)
