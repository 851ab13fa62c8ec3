"""SAM masks for box prompts, the optional filter of the official counting reward (``counting.py``: ``facebook/
sam-vit-base`` through ``SamProcessor`` and ``post_process_masks``), with the processor's steps written in torch:

- the image's longer side resized to SAM's input size (1024; bilinear), ImageNet normalisation, zero padding at the
  bottom and right to a square; the boxes scaled by the same factors;
- the low-resolution masks upsampled (bilinear) to the padded square, cropped to the resized image, upsampled to
  the original size and thresholded at 0; the three multimask outputs are merged by union (the official
  ``mean(...) > 0``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import SamModel

from . import module_device, module_dtype
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize, resize

MASK_CHUNK = 16  # masks upsampled at a time: (16, 3, 1024, 1024) floats stay under 200 MB


def sam_input_size(height: int, width: int, side: int) -> tuple[int, int]:
    """(h, w) with the longer side ``side``, rounded half up as ``SamProcessor`` rounds."""
    scale = side / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def sam_inputs(pixels: Tensor, boxes: Tensor, side: int) -> tuple[Tensor, Tensor]:
    """An image ``(3, H, W)`` in 0..1 and its boxes ``(N, 4)`` (x0, y0, x1, y1 pixels) -> SAM pixels
    ``(1, 3, side, side)`` and boxes ``(1, N, 4)`` in the resized image's coordinates."""
    height, width = pixels.shape[-2:]
    new_h, new_w = sam_input_size(height, width, side)
    resized = normalize(resize(pixels[None], (new_h, new_w), "bilinear"), IMAGENET_MEAN, IMAGENET_STD)
    padded = F.pad(resized, (0, side - new_w, 0, side - new_h))  # (1, 3, side, side)
    scale = torch.tensor([new_w / width, new_h / height] * 2, dtype=torch.float32, device=boxes.device)
    return padded, (boxes.float() * scale)[None]


def upscale_masks(low_res: Tensor, input_size: tuple[int, int], image_size: tuple[int, int], side: int) -> Tensor:
    """Mask logits ``(N, 3, m, m)`` -> boolean masks ``(N, H, W)``: the union of the three multimask outputs."""
    masks = []
    for chunk in low_res.float().split(MASK_CHUNK):
        square = F.interpolate(chunk, (side, side), mode="bilinear", align_corners=False)
        cropped = square[..., : input_size[0], : input_size[1]]
        full = F.interpolate(cropped, image_size, mode="bilinear", align_corners=False)  # (n, 3, H, W)
        masks.append((full > 0).any(dim=1))
    return torch.cat(masks)


@torch.no_grad()
def sam_masks(sam: SamModel, pixels: Tensor, boxes: Tensor) -> Tensor:
    """SAM's masks ``(N, H, W)`` (bool, on the CPU) for the boxes ``(N, 4)`` in the image ``(3, H, W)``."""
    side = sam.config.vision_config.image_size
    device, dtype = module_device(sam), module_dtype(sam)
    sam_pixels, sam_boxes = sam_inputs(pixels.to(device), boxes.to(device), side)
    low_res = sam(pixel_values=sam_pixels.to(dtype), input_boxes=sam_boxes.to(dtype), multimask_output=True).pred_masks
    input_size = sam_input_size(*pixels.shape[-2:], side)
    return upscale_masks(low_res[0], input_size, tuple(pixels.shape[-2:]), side).cpu()
