"""Image preprocessing of the reward models in torch, on the images' own device, instead of PIL round trips.

The official pipelines convert the decoded [0, 1] tensors with torchvision's ``ToPILImage`` (``mul(255).byte()``:
truncation to 8 bits) before the Hugging Face processors, which then resize with PIL. :func:`truncate_to_8bit`
reproduces the truncation exactly; the resizes use torch's antialiased kernels, which follow PIL's filters (bicubic
with a = -0.5, triangle for bilinear) but keep float values instead of rounding to 8 bits after the resize, so pixels
differ from the PIL path by at most about one 8-bit level.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP; also used for PickScore's LAION CLIP-H
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # GroundingDINO and SAM processors
IMAGENET_STD = (0.229, 0.224, 0.225)


def truncate_to_8bit(pixels: Tensor) -> Tensor:
    """What ``ToPILImage`` keeps of [0, 1] floats: ``floor(x * 255) / 255`` (it truncates, it does not round)."""
    return torch.floor(pixels.clamp(0, 1) * 255) / 255


def pad_to_square(pixels: Tensor, fill: Sequence[float]) -> Tensor:
    """Pad ``[B, C, H, W]`` to a square of side max(H, W), image centred (offset floor((long - short) / 2)), the
    border filled with ``fill`` per channel: LLaVA's ``expand2square`` as CLIP-FlanT5 uses it."""
    _, channels, height, width = pixels.shape
    side = max(height, width)
    if height == width:
        return pixels
    canvas = torch.tensor(fill, dtype=pixels.dtype, device=pixels.device).view(1, channels, 1, 1)
    canvas = canvas.expand(pixels.shape[0], channels, side, side).clone()  # (B, C, side, side)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[:, :, top:top + height, left:left + width] = pixels
    return canvas


def resize(pixels: Tensor, size: tuple[int, int], mode: str) -> Tensor:
    """Antialiased resize of ``[B, C, H, W]`` to ``size`` (h, w) with ``mode`` bilinear or bicubic (PIL-like)."""
    if tuple(pixels.shape[-2:]) == tuple(size):
        return pixels
    return F.interpolate(pixels, size=size, mode=mode, antialias=True, align_corners=False)


def shortest_side_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(h, w) with the shorter side equal to ``side`` and the aspect ratio kept (the longer side truncated), as
    ``torchvision.transforms.Resize(side)`` and the CLIP image processor compute it."""
    if height <= width:
        return side, int(side * width / height)
    return int(side * height / width), side


def center_crop(pixels: Tensor, side: int) -> Tensor:
    """The centred ``side`` x ``side`` crop of ``[B, C, H, W]`` (offsets rounded as torchvision's ``CenterCrop``)."""
    height, width = pixels.shape[-2:]
    top, left = int(round((height - side) / 2.0)), int(round((width - side) / 2.0))
    return pixels[..., top:top + side, left:left + side]


def normalize(pixels: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel of ``[B, C, H, W]``."""
    mean_t = torch.tensor(mean, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=pixels.dtype, device=pixels.device).view(1, -1, 1, 1)
    return (pixels - mean_t) / std_t
