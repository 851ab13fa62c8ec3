"""What every sampling algorithm shares: the progress callback type, the trace recorder, known tokens for editing,
and the one rule that turns a pixel mask into token positions to regenerate.

Noise sources follow one naming rule: each algorithm's ``noise.py`` defines the protocol ``<Algorithm>Noise`` (the
draws a sampler makes, in a fixed order, so parity tests can replay recorded draws) and ``Seeded<Algorithm>Noise``
(all draws from one CPU generator seeded by the user's seed): ``PixelFlowNoise``, ``FlowSearchNoise``, ``MARNoise``,
``ARPGNoise``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

Callback = Callable[[int, int, "Tensor | None"], None]
"""Called after each step as ``(done, total, preview)``: steps (model calls, for searches) done so far, their total,
and a preview or None (an IMAGE ``[1, H, W, C]`` from the pixel and token samplers; the best x0 prediction so far
``[1, ...]`` from a search). It may raise to interrupt the run."""

MASK_THRESHOLD = 0.5
"""A token is regenerated when any pixel of its patch has a mask value at or above this (ComfyUI: 1 = regenerate)."""


class Trace:
    """An optional recorder that samplers fill with named intermediate tensors and the model-call count.

    Samplers take ``trace=None`` and record only when one is given, so the hot loop pays nothing otherwise. Names are
    ``<scope>.<what>``; the sampler sets ``scope`` (e.g. ``s2.k0`` = stage 2, step 0) before calling code that
    records. Searches also append one summary row per step (plain numbers: NFE used, candidate rewards, the choice
    made).
    """

    def __init__(self) -> None:
        self.values: dict[str, Tensor] = {}
        self.scope = ""
        self.nfe = 0
        self.rows: list[dict[str, object]] = []

    def row(self, **fields: object) -> None:
        """Append one step's summary (JSON-friendly values), e.g. ``nfe``, ``rewards``, ``chosen``, ``best``."""
        self.rows.append(fields)

    def record(self, name: str, value: Tensor) -> None:
        key = f"{self.scope}.{name}" if self.scope else name
        self.values[key] = value.detach().to("cpu", copy=True)


@dataclass(frozen=True)
class KnownTokens:
    """Editing input of the token samplers: the tokens in raster order and which of them to keep.

    ``tokens`` is ``(B, L)`` int64 code indices (ARPG) or ``(B, L, C)`` continuous tokens (MAR); ``known`` is
    ``(B, L)`` bool, True where the token is kept. The values at unknown positions are ignored.
    """

    tokens: Tensor
    known: Tensor

    @classmethod
    def from_grid(cls, tokens: Tensor, known: Tensor) -> KnownTokens:
        """From a token grid ``(B, h, w)`` or ``(B, h, w, C)`` and its kept positions ``(h, w)`` or ``(B, h, w)``."""
        if tokens.dim() < 3 or known.shape[-2:] != tokens.shape[1:3]:
            raise ValueError(f"known positions {tuple(known.shape)} do not fit the token grid {tuple(tokens.shape)}")
        batch, height, width = tokens.shape[:3]
        kept = known.to(torch.bool).expand(batch, height, width)  # (B, h, w)
        return cls(tokens.flatten(1, 2), kept.flatten(1))


def regenerated_tokens(mask: Tensor, image_size: tuple[int, int], grid: tuple[int, int]) -> Tensor:
    """MASK ``[B, H, W]`` or ``[H, W]`` at the image's size -> token positions to regenerate ``(B, h, w)`` bool.

    One rule for every token sampler: the image is split into the ``grid`` of token cells (cells of unequal size
    where the sides do not divide, as adaptive pooling does; MAR resizes the image to its model size first), and a
    token is regenerated when any pixel of its cell has ``mask >= MASK_THRESHOLD``, so a soft or anti-aliased brush
    edge still regenerates every token it touches. Each batch entry keeps its own mask. A mask of another size than
    the image is an error, not stretched: ComfyUI gives an image without alpha a 64x64 empty mask, which would
    otherwise silently edit nothing.
    """
    mask = mask[None] if mask.dim() == 2 else mask
    if mask.dim() != 3:
        raise ValueError(f"a mask must be [B, H, W] or [H, W], got shape {tuple(mask.shape)}")
    height, width = image_size
    if tuple(mask.shape[1:]) != (height, width):
        raise ValueError(f"the mask is {mask.shape[2]}x{mask.shape[1]} but the image is {width}x{height}: they must "
                         "have the same size (a LoadImage without alpha gives a 64x64 empty mask; draw one in the "
                         "mask editor or use a mask node)")
    pooled = F.adaptive_max_pool2d(mask[:, None].float(), grid)[:, 0]  # (B, h, w): the largest value in each cell
    return pooled >= MASK_THRESHOLD
