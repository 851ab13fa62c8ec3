"""Logit filters for sampling discrete tokens: top-k and (correct) nucleus / top-p.

ARPG's official ``top_k_top_p_filtering`` (``models/arpg.py``) scatters the top-p mask along dim 1 of a 3-D
logits tensor, which mixes up token positions with vocabulary entries (and fails when vocab > tokens). Here both
filters act on the last (vocabulary) dimension of tensors of any rank.
"""

from __future__ import annotations

import torch
from torch import Tensor


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Set every logit below the k-th largest of its row (last dim) to -inf; ``k <= 0`` keeps all."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: Tensor, p: float, *, min_keep: int = 1) -> Tensor:
    """Keep the smallest set of tokens whose probability mass reaches ``p`` (at least ``min_keep``); -inf the rest.

    ``p >= 1`` keeps all. The token that crosses the threshold is kept, as in the usual nucleus definition.
    """
    if p >= 1.0:
        return logits
    if p <= 0.0:
        raise ValueError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability mass strictly above each token
    drop_sorted = mass_before >= p
    drop_sorted[..., :min_keep] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))
