"""2x2 block-correlated Gaussian noise, PixelFlow's re-noising at every cascade stage change.

Inside each 2x2 pixel block (per image and channel) the four values have unit variance and pairwise correlation
``gamma`` (PixelFlow uses -1/3); blocks are independent. ``PixelFlowPipeline.sample_block_noise``
(ShoufaChen/PixelFlow, ``pixelflow/pipeline_pixelflow.py``) draws one ``MultivariateNormal`` sample per block in a
Python loop; here all blocks are drawn at once as ``eps @ L^T`` with ``L`` the Cholesky factor of the same
covariance, which is the same distribution (and the same values when fed the same ``eps``).
"""

from __future__ import annotations

import torch
from torch import Tensor

BLOCK = 2
COVARIANCE_JITTER = 1e-6  # added to the diagonal, as in the official covariance


def block_cholesky(gamma: float) -> Tensor:
    """Cholesky factor float32 ``[4, 4]`` of ``(1 - gamma) I + gamma 11^T + 1e-6 I`` (block pixel order p*2+q)."""
    size = BLOCK * BLOCK
    eye = torch.eye(size, dtype=torch.float32)
    covariance = eye * (1 - gamma) + torch.ones(size, size, dtype=torch.float32) * gamma + COVARIANCE_JITTER * eye
    return torch.linalg.cholesky(covariance)


def block_count(shape: torch.Size | tuple[int, ...]) -> int:
    """Number of 2x2 blocks in a ``[B, C, H, W]`` tensor of even H and W."""
    batch, channels, height, width = shape
    if height % BLOCK or width % BLOCK:
        raise ValueError(f"block noise needs even height and width, got {height}x{width}")
    return batch * channels * (height // BLOCK) * (width // BLOCK)


def correlate_blocks(eps: Tensor, cholesky: Tensor, shape: torch.Size | tuple[int, ...]) -> Tensor:
    """Turn i.i.d. ``eps`` ``[blocks, 4]`` (blocks ordered b, c, block row, block col) into block noise ``shape``."""
    batch, channels, height, width = shape
    noise = eps @ cholesky.to(eps).T  # (blocks, 4), each row ~ N(0, Sigma)
    noise = noise.reshape(batch, channels, height // BLOCK, width // BLOCK, BLOCK, BLOCK)
    return noise.permute(0, 1, 2, 4, 3, 5).reshape(batch, channels, height, width)  # (b c h p w q) -> (b c H W)
