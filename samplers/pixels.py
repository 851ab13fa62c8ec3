"""Conversions between pixel tensors ``[B, C, H, W]`` in [-1, 1] (what the models produce) and image tensors
``[B, H, W, C]`` in [0, 1] (ComfyUI's IMAGE layout, and the samplers' previews)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def pixels_to_image(x: Tensor) -> Tensor:
    """``clamp(x / 2 + 0.5, 0, 1)``, channels last (the official pipelines' output mapping)."""
    return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1)


def image_to_pixels(image: Tensor, size: int | tuple[int, int], batch: int) -> Tensor:
    """IMAGE ``[B, H, W, C]`` in 0..1 -> pixels ``[batch, 3, h, w]`` in [-1, 1], resized (bicubic, antialiased) to
    ``size`` (side or (h, w)); a single image is repeated over the batch."""
    if image.shape[0] not in (1, batch):
        raise ValueError(f"image batch {image.shape[0]} must be 1 or equal batch_size {batch}")
    target = (size, size) if isinstance(size, int) else tuple(size)
    pixels = image[..., :3].permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    if tuple(pixels.shape[-2:]) != target:
        pixels = F.interpolate(pixels, size=target, mode="bicubic", antialias=True, align_corners=False)
    return (pixels.clamp(0, 1) * 2 - 1).expand(batch, -1, -1, -1)
