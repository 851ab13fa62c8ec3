"""PixelFlow transformer: a DiT on raw RGB pixels, class- or text-conditioned, used at every cascade stage.

Chen et al., "PixelFlow: Pixel-Space Generative Models with Flow" (arXiv 2504.07963); parameter names and shapes
follow ``pixelflow/model.py`` of ShoufaChen/PixelFlow @ 8805204 so the released ``model.pt`` loads strictly.
The same weights serve every stage; the stage's resolution reaches the network through the token grid of the
2D RoPE table (integer positions 0..G-1) and through the ``latent_size`` embedding of G.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..kernels.attention import attention, padding_bias
from ..kernels.embeddings import sinusoidal_embedding
from ..kernels.rope import apply_pixelflow_rope
from . import Operations, ReleasedModel

SINUSOID_DIM = 256  # diffusers Timesteps(256, flip_sin_to_cos=True, downscale_freq_shift=1)
NORM_EPS = 1e-6


@dataclass(frozen=True)
class PixelFlowConfig:
    """The official ``PixelFlowModel`` constructor arguments (``config.yaml`` ``model.params``)."""

    num_attention_heads: int
    attention_head_dim: int
    depth: int
    patch_size: int
    in_channels: int = 3
    out_channels: int = 3
    num_classes: int = 0
    cross_attention_dim: int | None = None
    attention_bias: bool = True
    dropout: float = 0.0

    @property
    def hidden_size(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    @classmethod
    def from_params(cls, params: dict) -> PixelFlowConfig:
        """Build from official constructor arguments; unknown names are an error, not silently dropped."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown PixelFlow model parameters {unknown}")
        return cls(**params)


class EmbeddingMLP(nn.Module):
    """Sinusoid features -> Linear -> SiLU -> Linear (diffusers ``TimestepEmbedding`` names)."""

    def __init__(self, width: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.linear_1 = ops.Linear(SINUSOID_DIM, width, **factory)
        self.linear_2 = ops.Linear(width, width, **factory)

    def forward(self, features: Tensor) -> Tensor:
        return self.linear_2(F.silu(self.linear_1(features)))


class PatchEmbed(nn.Module):
    def __init__(self, config: PixelFlowConfig, ops: Operations, **factory) -> None:
        super().__init__()
        p = config.patch_size
        self.proj = ops.Conv2d(config.in_channels, config.hidden_size, kernel_size=p, stride=p, **factory)

    def forward(self, pixels: Tensor) -> Tensor:
        return self.proj(pixels).flatten(2).transpose(1, 2)  # (B, D, Gh, Gw) -> (B, N, D), raster order


class LabelEmbedding(nn.Module):
    """Class table with one extra row (index ``num_classes``) for the unconditional / CFG label."""

    def __init__(self, num_classes: int, width: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.embedding_table = ops.Embedding(num_classes + 1, width, **factory)

    def forward(self, labels: Tensor) -> Tensor:
        return self.embedding_table(labels)


class Attention(nn.Module):
    """Multi-head attention with RMSNorm on q and k over all heads, RoPE on q (and on k for self-attention)."""

    def __init__(self, width: int, heads: int, context_width: int | None, bias: bool, ops: Operations, **factory):
        super().__init__()
        self.heads = heads
        kv_width = context_width or width
        self.q_proj = ops.Linear(width, width, bias=bias, **factory)
        self.k_proj = ops.Linear(kv_width, width, bias=bias, **factory)
        self.v_proj = ops.Linear(kv_width, width, bias=bias, **factory)
        self.o_proj = ops.Linear(width, width, bias=bias, **factory)
        self.q_norm = ops.RMSNorm(width, eps=NORM_EPS, **factory)
        self.k_norm = ops.RMSNorm(width, eps=NORM_EPS, **factory)

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, L, D) -> (B, H, L, hd)

    def forward(self, x: Tensor, rope: Tensor, context: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        source = x if context is None else context
        q = apply_pixelflow_rope(self._heads(self.q_norm(self.q_proj(x))), rope)  # (B, H, N, hd)
        k = self._heads(self.k_norm(self.k_proj(source)))  # (B, H, L, hd)
        if context is None:
            k = apply_pixelflow_rope(k, rope)  # text keys carry no image position
        v = self._heads(self.v_proj(source))
        out = attention(q, k, v, mask=bias)  # (B, H, N, hd)
        return self.o_proj(out.transpose(1, 2).flatten(2))


class AdaNormZero(nn.Module):
    """The block's modulation: ``linear(SiLU(cond))`` split into 6 (shift/scale/gate for attention and MLP)."""

    def __init__(self, width: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.linear = ops.Linear(width, 6 * width, **factory)

    def forward(self, cond: Tensor) -> tuple[Tensor, ...]:
        return self.linear(F.silu(cond))[:, None, :].chunk(6, dim=-1)  # each (B, 1, D)


class FeedForward(nn.Module):
    def __init__(self, width: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.fc1 = ops.Linear(width, 4 * width, **factory)
        self.fc2 = ops.Linear(4 * width, width, **factory)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class TransformerBlock(nn.Module):
    def __init__(self, config: PixelFlowConfig, ops: Operations, **factory) -> None:
        super().__init__()
        width, heads, bias = config.hidden_size, config.num_attention_heads, config.attention_bias
        self.norm1 = AdaNormZero(width, ops, **factory)
        self.norm1_ln = ops.LayerNorm(width, eps=NORM_EPS, elementwise_affine=False, **factory)
        self.attn1 = Attention(width, heads, None, bias, ops, **factory)
        if config.cross_attention_dim:
            self.norm2 = ops.RMSNorm(width, eps=NORM_EPS, **factory)
            self.attn2 = Attention(width, heads, config.cross_attention_dim, bias, ops, **factory)
        self.norm3 = ops.RMSNorm(width, eps=NORM_EPS, **factory)
        self.mlp = FeedForward(width, ops, **factory)

    def forward(self, x: Tensor, cond: Tensor, rope: Tensor, context: Tensor | None, bias: Tensor | None) -> Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(cond)
        x = x + gate_msa * self.attn1(self.norm1_ln(x) * (1 + scale_msa) + shift_msa, rope)
        if context is not None:
            x = x + self.attn2(self.norm2(x), rope, context, bias)  # no modulation, no gate
        return x + gate_mlp * self.mlp(self.norm3(x) * (1 + scale_mlp) + shift_mlp)


class PixelFlowModel(ReleasedModel):
    """Velocity in stage-local time for pixels ``[B, C, H, W]`` at one cascade stage."""

    DTYPE_REFERENCE = "proj_out_1.weight"

    def __init__(
        self,
        config: PixelFlowConfig,
        *,
        operations: Operations = nn,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(config, compute_dtype)
        ops, factory, width = operations, {"device": device, "dtype": dtype}, config.hidden_size
        self.patch_embed = PatchEmbed(config, ops, **factory)
        self.timestep_embedder = EmbeddingMLP(width, ops, **factory)
        self.latent_size_embedder = EmbeddingMLP(width, ops, **factory)
        if config.num_classes > 0:
            self.class_embedder = LabelEmbedding(config.num_classes, width, ops, **factory)
        self.transformer_blocks = nn.ModuleList(TransformerBlock(config, ops, **factory) for _ in range(config.depth))
        self.norm_out = ops.LayerNorm(width, eps=NORM_EPS, elementwise_affine=False, **factory)
        self.proj_out_1 = ops.Linear(width, 2 * width, **factory)
        self.proj_out_2 = ops.Linear(width, config.patch_size**2 * config.out_channels, **factory)

    def conditioning(self, timestep: Tensor, latent_size: Tensor, class_labels: Tensor | None) -> Tensor:
        """``MLP_t(sinus(t)) (+ class row) + MLP_ls(sinus(G))`` -> (B, D)."""
        dtype = self.activation_dtype
        features = sinusoidal_embedding(timestep, SINUSOID_DIM, frequency_shift=1).to(dtype)
        cond = self.timestep_embedder(features)
        if class_labels is not None:
            cond = cond + self.class_embedder(class_labels).to(dtype)
        size_features = sinusoidal_embedding(latent_size.reshape(-1), SINUSOID_DIM, frequency_shift=1).to(dtype)
        return cond + self.latent_size_embedder(size_features)  # (B, D); a [1] latent size broadcasts

    def forward(
        self,
        pixels: Tensor,
        timestep: Tensor,
        *,
        latent_size: Tensor,
        pos_embed: Tensor,
        class_labels: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        """pixels (B, C, H, W) in [-1, 1], timestep (B,) on the 0..999 scale, latent_size [1] or [B] = W / patch,
        pos_embed [N, head_dim, 2]; c2i: class_labels (B,) (``num_classes`` = unconditional); t2i: context
        (B, L, Ctxt) with context_mask (B, L) 1 = token, 0 = padding. Returns the velocity (B, C, H, W)."""
        _, _, height, width = pixels.shape
        p, channels = self.config.patch_size, self.config.out_channels
        dtype = self.activation_dtype
        x = self.patch_embed(pixels.to(dtype))  # (B, N, D)
        cond = self.conditioning(timestep, latent_size, class_labels)  # (B, D)
        bias = padding_bias(context_mask, dtype) if context_mask is not None else None  # (B, 1, 1, L)
        context = context.to(dtype) if context is not None else None
        for block in self.transformer_blocks:
            x = block(x, cond, pos_embed, context, bias)
        shift, scale = self.proj_out_1(F.silu(cond))[:, None, :].chunk(2, dim=-1)  # (B, 1, D) each
        y = self.proj_out_2(self.norm_out(x) * (1 + scale) + shift)  # (B, N, p*p*C)
        return rearrange(y, "b (h w) (p q c) -> b c (h p) (w q)", h=height // p, w=width // p, p=p, q=p, c=channels)
