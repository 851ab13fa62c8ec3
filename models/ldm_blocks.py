"""Convolutional building blocks of the latent-diffusion autoencoders (ResNet block, single-head attention, 2x down/up).

Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (2022), ``ldm/modules/diffusionmodules/
model.py``. MAR's KL-16 VAE (``models/vae.py`` of LTH14/mar) and LlamaGen's VQ-16 (``tokenizer/tokenizer_image/
vq_model.py``) both use these blocks with these parameter names (``norm1``, ``conv1``, ``nin_shortcut``, ``q``/``k``/
``v``/``proj_out``, ``conv``), so the released checkpoints load into them directly.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels.attention import attention
from . import Operations

GROUPS = 32
NORM_EPS = 1e-6


def group_norm(channels: int, ops: Operations, **factory) -> nn.Module:
    """GroupNorm(32 groups, eps 1e-6, affine): LDM's ``Normalize``."""
    return ops.GroupNorm(GROUPS, channels, eps=NORM_EPS, affine=True, **factory)


class ResnetBlock(nn.Module):
    """``x + conv2(swish(norm2(conv1(swish(norm1(x))))))``, with a 1x1 ``nin_shortcut`` when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.norm1 = group_norm(in_channels, ops, **factory)
        self.conv1 = ops.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, **factory)
        self.norm2 = group_norm(out_channels, ops, **factory)
        self.conv2 = ops.Conv2d(out_channels, out_channels, kernel_size=3, padding=1, **factory)
        if in_channels != out_channels:
            self.nin_shortcut = ops.Conv2d(in_channels, out_channels, kernel_size=1, **factory)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        shortcut = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return shortcut + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels with 1x1-conv projections, scale ``C^-1/2``, residual."""

    def __init__(self, channels: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.norm = group_norm(channels, ops, **factory)
        self.q = ops.Conv2d(channels, channels, kernel_size=1, **factory)
        self.k = ops.Conv2d(channels, channels, kernel_size=1, **factory)
        self.v = ops.Conv2d(channels, channels, kernel_size=1, **factory)
        self.proj_out = ops.Conv2d(channels, channels, kernel_size=1, **factory)

    def forward(self, x: Tensor) -> Tensor:
        batch, channels, height, width = x.shape
        h = self.norm(x)
        as_tokens = lambda t: t.flatten(2).transpose(1, 2)[:, None]  # noqa: E731 - (B, C, H, W) -> (B, 1, HW, C)
        out = attention(as_tokens(self.q(h)), as_tokens(self.k(h)), as_tokens(self.v(h)))  # (B, 1, HW, C)
        out = out[:, 0].transpose(1, 2).reshape(batch, channels, height, width)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Pad right/bottom by one, then a stride-2 3x3 conv (LDM's asymmetric padding)."""

    def __init__(self, channels: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, kernel_size=3, stride=2, **factory)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest 2x, then a 3x3 conv."""

    def __init__(self, channels: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.conv = ops.Conv2d(channels, channels, kernel_size=3, padding=1, **factory)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
