"""2D rotary position embeddings (RoPE) for token grids.

Both families that use 2D RoPE rotate *adjacent* channel pairs ``(2j, 2j+1)`` of each head, with per-axis
frequencies ``base^(-2k / (head_dim/2))`` for ``k < head_dim/4``. They differ in:

* axis order: PixelFlow's first half of the pairs rotates with the **column** index, ARPG's with the **row**;
* table layout: PixelFlow's pipeline passes ``[G*G, head_dim, 2]`` (cos/sin repeated for both members of a
  pair; ``diffusers.get_2d_rotary_pos_embed`` as called in ``pixelflow/pipeline_pixelflow.py``), ARPG keeps
  ``[cls + G*G, head_dim/2, 2]`` (one entry per pair; ``precompute_freqs_cis_2d`` in ``models/arpg.py``);
* ARPG's leading class-token rows are all zeros (cos = sin = 0), inherited from LlamaGen: rotating with them
  zeroes the class token's q and k. It is *not* an identity rotation, and parity depends on it.

The tables are computed in float64 and returned in float32, like the official code's numpy/float path.
"""

from __future__ import annotations

import torch
from torch import Tensor


def axis_frequencies(head_dim: int, base: float = 10000.0) -> Tensor:
    """Per-axis inverse frequencies ``base^(-2k/(head_dim/2))``, k = 0..head_dim/4-1, float64."""
    if head_dim % 4 != 0:
        raise ValueError(f"2D RoPE needs head_dim divisible by 4, got {head_dim}")
    half = head_dim // 2
    exponents = torch.arange(0, half, 2, dtype=torch.float64) / half  # (head_dim/4,)
    return base ** -exponents


def grid_angles(grid: int, head_dim: int, *, column_first: bool, base: float = 10000.0) -> Tensor:
    """Rotation angle of every pair for every raster position ``p = row * grid + col``.

    Returns float64 ``(grid*grid, head_dim/2)``: the first ``head_dim/4`` pairs rotate with the first axis
    (column when ``column_first``, else row), the rest with the other axis.
    """
    freqs = axis_frequencies(head_dim, base)  # (Q,)
    coords = torch.arange(grid, dtype=torch.float64)
    rows = coords.repeat_interleave(grid)  # (N,) row of each raster position
    cols = coords.repeat(grid)  # (N,)
    first, second = (cols, rows) if column_first else (rows, cols)
    return torch.cat([first[:, None] * freqs, second[:, None] * freqs], dim=1)  # (N, head_dim/2)


def pixelflow_rope_table(grid: int, head_dim: int) -> Tensor:
    """PixelFlow's per-stage table ``[G*G, head_dim, 2]`` (last axis: cos, sin), each pair's value repeated.

    Positions are integer token indices 0..G-1 at every stage (no rescaling across stages).
    """
    angles = grid_angles(grid, head_dim, column_first=True).repeat_interleave(2, dim=1)  # (N, head_dim)
    return torch.stack([angles.cos(), angles.sin()], dim=-1).float()  # (N, head_dim, 2)


def arpg_rope_table(grid: int, head_dim: int, *, base: float = 10000.0, cls_token_num: int = 1) -> Tensor:
    """ARPG's table ``[cls_token_num + G*G, head_dim/2, 2]`` (cos, sin); class rows all zero, raster p at p+cls."""
    angles = grid_angles(grid, head_dim, column_first=False, base=base)  # (N, head_dim/2)
    table = torch.stack([angles.cos(), angles.sin()], dim=-1)  # (N, head_dim/2, 2)
    class_rows = torch.zeros(cls_token_num, head_dim // 2, 2, dtype=table.dtype)
    return torch.cat([class_rows, table], dim=0).float()


def apply_rope_pairs(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent channel pairs of ``x`` (..., D) by per-pair ``cos``/``sin`` broadcastable to (..., D/2).

    Computed in float32 (at least) and cast back to ``x``'s dtype, as both official implementations do.
    """
    compute = torch.promote_types(x.dtype, torch.float32)
    pairs = x.to(compute).unflatten(-1, (-1, 2))  # (..., D/2, 2)
    even, odd = pairs.unbind(-1)
    cos, sin = cos.to(compute), sin.to(compute)
    rotated = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1)  # (..., D/2, 2)
    return rotated.flatten(-2).to(x.dtype)


def apply_pixelflow_rope(x: Tensor, table: Tensor) -> Tensor:
    """Apply a PixelFlow table ``[N, D, 2]`` to ``x`` (B, H, N, D); the table's repeated entries are de-duplicated."""
    return apply_rope_pairs(x, table[:, 0::2, 0], table[:, 0::2, 1])


def apply_arpg_rope(x: Tensor, rows: Tensor) -> Tensor:
    """Apply ARPG table rows ``[..., N, D/2, 2]`` to ``x`` (B, N, H, D), head axis broadcast as in the official code."""
    return apply_rope_pairs(x, rows[..., None, :, 0], rows[..., None, :, 1])
