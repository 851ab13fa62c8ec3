"""A mask of a region of an image (a half or a border band), for the inpainting and outpainting samplers.

Why in the pack: the MAR and ARPG editing workflows need "keep the left half, generate the right" or "generate a
border"; building that from core nodes takes a chain of Solid Mask and Mask Composite with pixel offsets that break
when the image size changes, while this node follows the image it is given.
"""

from __future__ import annotations

import torch

CATEGORY = "FlowAR"
REGIONS = ("right", "left", "bottom", "top", "border", "centre")


def region_mask(height: int, width: int, region: str, amount: float) -> torch.Tensor:
    """``(H, W)`` float 0/1, 1 = regenerate: the ``amount`` share of the side along ``region``'s direction
    (right/left/bottom/top), a band of ``amount / 2`` of each side along every edge (border) or its complement
    (centre). Band edges are rounded to whole pixels."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; choose one of {', '.join(REGIONS)}")
    if not 0.0 <= amount <= 1.0:
        raise ValueError(f"amount must be between 0 and 1, got {amount}")
    rows = torch.arange(height, dtype=torch.float32)[:, None] + 0.5  # (H, 1) pixel centres
    columns = torch.arange(width, dtype=torch.float32)[None, :] + 0.5  # (1, W)
    inside = {
        "right": columns >= width * (1 - amount),
        "left": columns < width * amount,
        "bottom": rows >= height * (1 - amount),
        "top": rows < height * amount,
    }
    if region in inside:
        return inside[region].expand(height, width).float()
    band = ((columns < width * amount / 2) | (columns >= width * (1 - amount / 2))
            | (rows < height * amount / 2) | (rows >= height * (1 - amount / 2)))  # (H, W)
    return (band if region == "border" else ~band).float()


class FlowARRegionMask:
    CATEGORY = CATEGORY
    FUNCTION = "make"
    DESCRIPTION = ("A MASK the size of the image covering one region (white = regenerate): a half (or any share) "
                   "from the right, left, bottom or top, a border band for outpainting, or the centre.")
    RETURN_TYPES = ("MASK",)
    RETURN_NAMES = ("mask",)
    OUTPUT_TOOLTIPS = ("1 over the region, 0 elsewhere; one per image of the batch.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The image the mask is for (its size and batch)."}),
                "region": (list(REGIONS), {"default": "right", "tooltip": "Which part to regenerate."}),
                "amount": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                                     "tooltip": "Share of the side covered (border: both bands together)."}),
            }
        }

    def make(self, image: torch.Tensor, region: str, amount: float) -> tuple[torch.Tensor]:
        batch, height, width = image.shape[:3]
        return (region_mask(height, width, region, amount).expand(batch, -1, -1).clone(),)


NODE_CLASS_MAPPINGS = {"FlowARRegionMask": FlowARRegionMask}
NODE_DISPLAY_NAME_MAPPINGS = {"FlowARRegionMask": "Region Mask (FlowAR)"}
