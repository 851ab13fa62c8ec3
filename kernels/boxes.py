"""Box operations in plain torch (torchvision is not a dependency): conversion, IoU, non-maximum suppression, and
rasterising boxes into masks. Boxes are ``(x0, y0, x1, y1)`` in pixels unless a name says otherwise."""

from __future__ import annotations

import torch
from torch import Tensor


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``(cx, cy, w, h)`` -> ``(x0, y0, x1, y1)``, any leading shape ``(..., 4)``."""
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """Areas ``(N,)`` of boxes ``(N, 4)``; degenerate boxes have area 0."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """Intersection over union ``(N, M)`` of boxes ``a (N, 4)`` and ``b (M, 4)``; 0 where the union is empty."""
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])  # (N, M, 2)
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)  # (N, M)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=torch.finfo(inter.dtype).tiny), torch.zeros_like(inter))


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first.

    A box is dropped when its IoU with an already kept, higher-scoring box exceeds ``iou_threshold`` (as
    ``torchvision.ops.nms``; equal scores keep the earlier box).
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    overlaps = (box_iou(boxes[order], boxes[order]) > iou_threshold).triu(1)  # (N, N): i suppresses later j
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    for i in range(len(order)):  # N is a few dozen detections: a Python loop over rows is cheap
        if not suppressed[i]:
            suppressed |= overlaps[i]
    return order[~suppressed]


def batched_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """:func:`nms` within each group (e.g. class) independently: kept indices, best score first.

    Boxes of different groups never suppress each other: each group is shifted to its own region of the plane.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    span = boxes.max() - boxes.min() + 1
    shifted = boxes + (groups.to(boxes.dtype) * span)[:, None]  # (N, 4), disjoint per group
    return nms(shifted, scores, iou_threshold)


def boxes_to_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """Rasterise boxes ``(N, 4)`` into boolean masks ``(N, height, width)``: a pixel is inside when its centre is."""
    ys = torch.arange(height, device=boxes.device, dtype=boxes.dtype) + 0.5  # (H,)
    xs = torch.arange(width, device=boxes.device, dtype=boxes.dtype) + 0.5  # (W,)
    inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] < boxes[:, 3:4])  # (N, H)
    inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] < boxes[:, 2:3])  # (N, W)
    return inside_y[:, :, None] & inside_x[:, None, :]
