"""How faithfully a built-in tokenizer (MAR's tiny KL VAE, ARPG's tiny VQ) reconstructs held-out world images:
pixel error, and whether the analyser reads each reconstruction exactly as it reads the original (the issues' bar:
>= 98% of 1,000 images). Reconstructions are quantised to 8 bits first, as a saved PNG would be.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.shapes_analyser import class_counts
from ..tooling.world import generate_many, image_batch

EVAL_SEED = 10**12  # held-out world seeds start here (training uses seed * 2^32 + k, far below for small seeds)
Rebuild = Callable[[Tensor], Tensor]  # IMAGE [B, 32, 32, 3] in 0..1 -> its reconstruction, same layout


def eight_bit(images: Tensor) -> Tensor:
    """IMAGE cut to the 256 levels a PNG stores, truncating as ComfyUI's Save Image does (``uint8(255 x)``)."""
    return (images.clamp(0, 1) * 255).to(torch.uint8).float() / 255


@dataclass(frozen=True)
class ReconstructionReport:
    images: int
    mse: float  # on 0..1 pixels
    psnr: float
    read_alike: int  # reconstructions where the analyser finds exactly the original's objects per class

    def line(self) -> str:
        share = self.read_alike / self.images
        return (f"reconstruction over {self.images} held-out world images: MSE {self.mse:.5f} (PSNR {self.psnr:.1f} "
                f"dB); analyser reads {self.read_alike}/{self.images} ({share:.1%}) exactly as the originals")


def held_out_images(first: int, count: int) -> Tensor:
    """World images ``[count, 32, 32, 3]`` of the held-out seeds ``EVAL_SEED + first ...``."""
    return image_batch(generate_many(range(EVAL_SEED + first, EVAL_SEED + first + count)))


def reconstruction_report(rebuild: Rebuild, count: int, batch: int = 250) -> ReconstructionReport:
    """Reconstruct ``count`` world images never seen in training and compare pixels and analyser readings."""
    squared, alike = 0.0, 0
    with torch.no_grad():
        for first in range(0, count, batch):
            originals = held_out_images(first, min(batch, count - first))
            rebuilt = eight_bit(rebuild(originals))
            squared += (rebuilt - originals).square().mean(dim=(1, 2, 3)).sum().item()
            alike += int((class_counts(rebuilt) == class_counts(originals)).all(dim=1).sum())
    mse = squared / count
    return ReconstructionReport(count, mse, 10 * math.log10(1 / max(mse, 1e-12)), alike)
