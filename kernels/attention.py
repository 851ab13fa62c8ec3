"""Attention dispatch: one entry point over ``torch.nn.functional.scaled_dot_product_attention``.

Masks come in two forms in the official code: boolean "may attend" masks and PixelFlow's additive text-padding
bias ``(1 - mask) * -10000`` (``pixelflow/model.py``). Both are accepted here so the model code stays declarative.
SDPA picks a fused kernel (flash / memory-efficient) on CUDA and a fused C++ kernel on CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PADDING_BIAS = -10000.0  # PixelFlow's additive bias for padded text positions (exp(-1e4) == 0 in float32)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    mask: Tensor | None = None,
    causal: bool = False,
    scale: float | None = None,
) -> Tensor:
    """Scaled dot-product attention over heads: q (B, H, Lq, D), k/v (B, H, Lk, D) -> (B, H, Lq, D).

    ``mask`` is boolean (True = may attend) or additive (float, added to the logits), broadcastable to
    (B, H, Lq, Lk). ``causal`` aligns the causal diagonal to the top-left, as SDPA does.
    """
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"attention shapes disagree: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if mask is not None and causal:
        raise ValueError("pass either a mask or causal=True, not both")
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, scale=scale)


def padding_bias(keep: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Additive bias (B, 1, 1, Lk) from a 0/1 key mask (B, Lk): 0 where kept, ``PADDING_BIAS`` where padded."""
    return ((1.0 - keep.to(dtype)) * PADDING_BIAS)[:, None, None, :]
