"""From GroundingDINO's raw outputs to per-class object counts: class assignment, the official score filters,
duplicate removal, and the official mask-coverage de-duplication.

The official reward (``rbf/corrector/reward_model/counting.py``, ``gdsam_reward``) post-processes with transformers'
``post_process_grounded_object_detection(box_threshold=0.2, text_threshold=0.2)`` and keeps a detection only when
the decoded phrase of its above-threshold tokens equals a class name exactly; merged phrases ("airplanes camels"),
sub-words and case differences are silently lost. Here each detection takes the class whose token span holds its
highest token probability (the rewards research note, §2.3), which needs no string matching and no particular
transformers version (the 4.x and 5.x post-processors differ in arguments and outputs). The rest follows the official
steps, with two additions that can be switched off to reproduce it:

1. keep a query whose best class probability exceeds the box and text thresholds (0.2, 0.2);
2. per class, keep scores above 0.6 x the class maximum or above 0.32 (official);
3. non-maximum suppression within each class (IoU 0.5) and across classes (IoU 0.8) (added; 1.0 = off);
4. per class in increasing mask area, accept a detection if more than half of its mask is not yet covered by the
   class's accepted masks; then count it unless at least half of its pixels carry a strictly higher score of any
   accepted detection (official; the masks come from SAM as officially, or are the boxes themselves);
5. reward = -sum over classes of (target - count)^2 (official ``reward_func: diff``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ...kernels.boxes import batched_nms, cxcywh_to_xyxy, nms


@dataclass(frozen=True)
class CountSettings:
    """Thresholds of the counting pipeline; the defaults are the official ones plus duplicate suppression."""

    box_threshold: float = 0.2  # official
    text_threshold: float = 0.2  # official
    relative_keep: float = 0.6  # official: keep score > 0.6 x the class maximum ...
    absolute_keep: float = 0.32  # ... or score > 0.32
    nms_iou: float = 0.5  # added: same-class boxes overlapping more are one object (1.0 = off, as officially)
    cross_class_iou: float = 0.8  # added: boxes of two classes overlapping more are one object (1.0 = off)
    coverage: float = 0.5  # official mask-coverage rule


@dataclass(frozen=True)
class Detections:
    """Detections in one image: boxes ``(N, 4)`` as (x0, y0, x1, y1) pixels, scores ``(N,)``, class ids ``(N,)``."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor

    def select(self, keep: Tensor) -> Detections:
        """The detections at the indices or boolean mask ``keep``."""
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])

    def __len__(self) -> int:
        return self.scores.shape[0]


def class_spans(input_ids: Sequence[int], *, separator_id: int, special_ids: Collection[int]) -> list[list[int]]:
    """Token positions of each class name in the detector text ``"name one. name two."``: the runs of tokens
    between separators (``.``) and special tokens (``[CLS]``, ``[SEP]``), in order."""
    spans: list[list[int]] = [[]]
    for position, token in enumerate(input_ids):
        if token == separator_id or token in special_ids:
            spans.append([])
        else:
            spans[-1].append(position)
    return [span for span in spans if span]


def detections_from_outputs(logits: Tensor, boxes: Tensor, spans: Sequence[Sequence[int]],
                            image_size: tuple[int, int], settings: CountSettings) -> Detections:
    """One image's detections from GroundingDINO's ``logits (Q, T)`` and ``pred_boxes (Q, 4)`` (normalised
    cx, cy, w, h): class = the span holding the query's highest token probability, score = that probability."""
    probs = logits.float().sigmoid()  # (Q, T)
    per_class = torch.stack([probs[:, list(span)].amax(dim=-1) for span in spans], dim=-1)  # (Q, C)
    scores, labels = per_class.max(dim=-1)  # (Q,), (Q,)
    height, width = image_size
    scale = torch.tensor([width, height, width, height], dtype=torch.float32, device=boxes.device)
    found = Detections(cxcywh_to_xyxy(boxes.float()) * scale, scores, labels)  # (Q, 4) pixels
    return found.select(scores > max(settings.box_threshold, settings.text_threshold))


def keep_confident(detections: Detections, settings: CountSettings) -> Detections:
    """Per class, the detections scoring above ``relative_keep`` x the class's best score or above
    ``absolute_keep`` (official)."""
    best = torch.zeros(int(detections.labels.max()) + 1 if len(detections) else 0, device=detections.scores.device)
    best = best.scatter_reduce(0, detections.labels, detections.scores, reduce="amax", include_self=False)
    threshold = best[detections.labels] * settings.relative_keep  # (N,)
    return detections.select((detections.scores > threshold) | (detections.scores > settings.absolute_keep))


def drop_duplicate_boxes(detections: Detections, settings: CountSettings) -> Detections:
    """Non-maximum suppression within each class, then across classes at the looser ``cross_class_iou``."""
    kept = detections.select(batched_nms(detections.boxes, detections.scores, detections.labels, settings.nms_iou))
    return kept.select(nms(kept.boxes, kept.scores, settings.cross_class_iou))


def filter_by_masks(detections: Detections, masks: Tensor, coverage: float) -> Detections:
    """The official de-duplication with masks ``(N, H, W)`` (bool) of the detections (see the module docstring,
    step 4); detections with an empty mask are dropped, as the official 0/0 comparison does."""
    areas = masks.flatten(1).sum(dim=1)  # (N,)
    top_score = torch.zeros(masks.shape[1:], dtype=detections.scores.dtype, device=masks.device)  # (H, W)
    accepted: list[int] = []
    for label in detections.labels.unique().tolist():
        covered = torch.zeros_like(masks[0])  # (H, W)
        members = (detections.labels == label).nonzero()[:, 0].tolist()
        for i in sorted(members, key=lambda j: int(areas[j])):  # increasing area, ties in detection order
            if areas[i] > 0 and (masks[i] & ~covered).sum() / areas[i] > coverage:
                accepted.append(i)
                covered |= masks[i]
                top_score[masks[i]] = top_score[masks[i]].clamp(min=float(detections.scores[i]))
    counted = [i for i in accepted
               if (top_score[masks[i]] > detections.scores[i]).sum() / areas[i] < coverage]
    return detections.select(torch.tensor(counted, dtype=torch.long, device=detections.scores.device))


def count_per_class(detections: Detections, num_classes: int) -> Tensor:
    """How many detections each class has: ``(C,)`` int64."""
    return torch.bincount(detections.labels.long().cpu(), minlength=num_classes)


def rss_reward(counts: Tensor, targets: Tensor) -> Tensor:
    """``-sum_c (target_c - count_c)^2`` per image: counts ``(B, C)``, targets ``(C,)`` -> ``(B,)`` float32."""
    return -((targets.float() - counts.float()) ** 2).sum(dim=-1)
