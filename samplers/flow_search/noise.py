"""Where a flow search's randomness comes from: initial latents, SDE step noise, re-noising, resampling.

The searches take any object with these methods, so parity tests can replay the draws recorded from an official
run in order. :class:`SeededFlowSearchNoise` is the normal source: every draw comes, in a fixed order, from one CPU
generator seeded by the user's seed, so the same seed gives the same result on every device. (The official code
draws from the global torch RNG and, for SMC resampling, Python's ``random.choices``.)
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class FlowSearchNoise(Protocol):
    def initial(self, shape: tuple[int, ...]) -> Tensor:
        """N(0, 1) float32 latents at the start of the path (one row per particle)."""

    def step(self, shape: tuple[int, ...]) -> Tensor:
        """N(0, 1) float32 noise of one Euler-Maruyama step (one row per proposal)."""

    def renoise(self, shape: tuple[int, ...]) -> Tensor:
        """N(0, 1) float32 noise of Search-over-Paths' forward (noising) kernel."""

    def ancestors(self, weights: Tensor, count: int) -> Tensor:
        """``count`` int64 indices drawn with replacement with probabilities ``weights`` (float64 ``[N]``, summing
        to 1): SMC's multinomial resampling."""


class SeededFlowSearchNoise:
    """All draws from one ``torch.Generator`` on the CPU seeded with ``seed``."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator("cpu").manual_seed(seed)

    def normal(self, shape: tuple[int, ...]) -> Tensor:
        return torch.randn(shape, generator=self.generator, dtype=torch.float32)

    initial = step = renoise = normal  # every Gaussian role draws from the same stream, in call order

    def ancestors(self, weights: Tensor, count: int) -> Tensor:
        return torch.multinomial(weights, count, replacement=True, generator=self.generator)
