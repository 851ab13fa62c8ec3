"""Where MAR's randomness comes from: the generation orders and the diffusion head's noise.

The sampler takes any object with these methods, so parity tests can replay the draws recorded from an official run;
:class:`SeededMARNoise` is the normal source.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor


class MARNoise(Protocol):
    """The loop's randomness, in a fixed order, so parity tests can replay recorded draws."""

    def orders(self, batch: int, length: int) -> Tensor:
        """One random permutation of 0..length-1 per sample, int64 (B, L)."""

    def start(self, iteration: int, rows: int, channels: int) -> Tensor:
        """The diffusion head's starting noise for this iteration's tokens (rows, C)."""

    def step(self, iteration: int, step: int, rows: int, channels: int) -> Tensor:
        """The per-step noise of the head's j-th step (rows, C)."""


class SeededMARNoise:
    """All draws from one CPU ``torch.Generator`` seeded by the user's seed (device independent)."""

    def __init__(self, seed: int) -> None:
        self.generator = torch.Generator("cpu").manual_seed(seed)

    def orders(self, batch: int, length: int) -> Tensor:
        return torch.argsort(torch.rand(batch, length, generator=self.generator), dim=1)

    def start(self, iteration: int, rows: int, channels: int) -> Tensor:
        return torch.randn(rows, channels, generator=self.generator)

    def step(self, iteration: int, step: int, rows: int, channels: int) -> Tensor:
        return torch.randn(rows, channels, generator=self.generator)
