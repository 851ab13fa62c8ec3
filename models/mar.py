"""MAR: a bidirectional masked-autoencoder transformer over continuous tokens, plus its per-token diffusion MLP.

Li et al., "Autoregressive Image Generation without Vector Quantization" (NeurIPS 2024); names and shapes follow
``models/mar.py`` and ``models/diffloss.py`` of LTH14/mar @ fe470ac (timm 0.9.12 ``Block``), so the released
``checkpoint-last.pth`` (``model_ema``) loads strictly. The transformer turns the known tokens into a condition ``z``
for every position; the diffusion MLP (``diffloss.net``) denoises one 16-channel token at a time given its ``z``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ..kernels.attention import attention
from ..kernels.embeddings import sinusoidal_embedding
from . import Operations, ReleasedModel

NORM_EPS = 1e-6  # the factories' ``partial(nn.LayerNorm, eps=1e-6)`` and the hard-coded z_proj_ln / MLP norms
FREQUENCY_DIM = 256  # the diffusion MLP's timestep sinusoid width


@dataclass(frozen=True)
class MARConfig:
    """``MAR`` constructor arguments that shape the network (official names)."""

    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    decoder_embed_dim: int
    decoder_depth: int
    decoder_num_heads: int
    diffloss_d: int
    diffloss_w: int
    img_size: int = 256
    vae_stride: int = 16
    patch_size: int = 1
    vae_embed_dim: int = 16
    class_num: int = 1000
    buffer_size: int = 64
    mlp_ratio: float = 4.0

    @property
    def grid(self) -> int:
        """Token-grid side ``img_size / vae_stride / patch_size`` (16 for 256 px)."""
        return self.img_size // self.vae_stride // self.patch_size

    @property
    def seq_len(self) -> int:
        return self.grid**2

    @property
    def token_dim(self) -> int:
        return self.vae_embed_dim * self.patch_size**2

    @classmethod
    def from_params(cls, params: dict) -> MARConfig:
        """From official constructor arguments; training-only ones (dropouts, mask ratio, label drop, diffusion
        batch multiplier, grad checkpointing, sampling steps, LayerNorm eps 1e-6) are accepted and ignored."""
        training_only = {"mask_ratio_min", "label_drop_prob", "attn_dropout", "proj_dropout", "diffusion_batch_mul",
                         "grad_checkpointing", "num_sampling_steps", "norm_layer_eps", "norm_layer"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known - training_only)
        if unknown:
            raise ValueError(f"unknown MAR model parameters {unknown}")
        return cls(**{name: value for name, value in params.items() if name in known})


def patchify(latents: Tensor, patch_size: int) -> Tensor:
    """VAE latents (B, c, H, W) -> tokens (B, H/p * W/p, c*p*p), raster order, channel order (c, p, q)."""
    return rearrange(latents, "b c (h p) (w q) -> b (h w) (c p q)", p=patch_size, q=patch_size)


def unpatchify(tokens: Tensor, grid: int, channels: int, patch_size: int) -> Tensor:
    """Tokens (B, grid*grid, c*p*p) -> VAE latents (B, c, grid*p, grid*p); the inverse of :func:`patchify`."""
    p = patch_size
    return rearrange(tokens, "b (h w) (c p q) -> b c (h p) (w q)", h=grid, w=grid, c=channels, p=p, q=p)


class Attention(nn.Module):
    """timm ``Attention``: fused qkv projection, full bidirectional softmax attention, output projection."""

    def __init__(self, width: int, heads: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = ops.Linear(width, 3 * width, **factory)
        self.proj = ops.Linear(width, width, **factory)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).reshape(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # 3 x (B, H, N, hd)
        return self.proj(attention(q, k, v).transpose(1, 2).reshape(batch, length, width))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.fc1 = ops.Linear(width, hidden, **factory)
        self.fc2 = ops.Linear(hidden, width, **factory)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, timm's default


class Block(nn.Module):
    """timm pre-norm ViT block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, ops: Operations, **factory) -> None:
        super().__init__()
        self.norm1 = ops.LayerNorm(width, eps=NORM_EPS, **factory)
        self.attn = Attention(width, heads, ops, **factory)
        self.norm2 = ops.LayerNorm(width, eps=NORM_EPS, **factory)
        self.mlp = Mlp(width, int(width * mlp_ratio), ops, **factory)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TimestepEmbedder(nn.Module):
    def __init__(self, width: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.mlp = nn.Sequential(ops.Linear(FREQUENCY_DIM, width, **factory), nn.SiLU(),
                                 ops.Linear(width, width, **factory))

    def forward(self, timesteps: Tensor, dtype: torch.dtype) -> Tensor:
        features = sinusoidal_embedding(timesteps, FREQUENCY_DIM)  # (N, 256) float32, DiT frequencies (/half)
        return self.mlp(features.to(dtype))


class ResBlock(nn.Module):
    """``x + gate * mlp(LN(x) * (1 + scale) + shift)`` with (shift, scale, gate) from the condition."""

    def __init__(self, width: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.in_ln = ops.LayerNorm(width, eps=NORM_EPS, **factory)
        self.mlp = nn.Sequential(ops.Linear(width, width, **factory), nn.SiLU(), ops.Linear(width, width, **factory))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), ops.Linear(width, 3 * width, **factory))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
        return x + gate * self.mlp(self.in_ln(x) * (1 + scale) + shift)


class FinalLayer(nn.Module):
    def __init__(self, width: int, out_channels: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.norm_final = ops.LayerNorm(width, eps=NORM_EPS, elementwise_affine=False, **factory)
        self.linear = ops.Linear(width, out_channels, **factory)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), ops.Linear(width, 2 * width, **factory))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(y).chunk(2, dim=-1)
        return self.linear(self.norm_final(x) * (1 + scale) + shift)


class SimpleMLPAdaLN(nn.Module):
    """The per-token denoiser: ``(x_t [N, C], t [N], z [N, D_dec]) -> [N, 2C]`` = (eps, variance interpolation)."""

    def __init__(self, token_dim: int, width: int, z_dim: int, depth: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.time_embed = TimestepEmbedder(width, ops, **factory)
        self.cond_embed = ops.Linear(z_dim, width, **factory)
        self.input_proj = ops.Linear(token_dim, width, **factory)
        self.res_blocks = nn.ModuleList(ResBlock(width, ops, **factory) for _ in range(depth))
        self.final_layer = FinalLayer(width, 2 * token_dim, ops, **factory)

    def forward(self, x: Tensor, t: Tensor, c: Tensor) -> Tensor:
        y = self.time_embed(t, x.dtype) + self.cond_embed(c)  # (N, W): the condition enters only here
        h = self.input_proj(x)
        for block in self.res_blocks:
            h = block(h, y)
        return self.final_layer(h, y)


class DiffLoss(nn.Module):
    """Holder of ``net`` (the name the checkpoint uses); the diffusion schedules live in the sampler."""

    def __init__(self, config: MARConfig, ops: Operations, **factory) -> None:
        super().__init__()
        self.net = SimpleMLPAdaLN(config.token_dim, config.diffloss_w, config.decoder_embed_dim, config.diffloss_d,
                                  ops, **factory)


class MAR(ReleasedModel):
    """Encoder over the known tokens (with ``buffer_size`` class rows), decoder over all positions -> ``z``."""

    DTYPE_REFERENCE = "z_proj.weight"

    def __init__(self, config: MARConfig, *, operations: Operations = nn, device=None, dtype=None,
                 compute_dtype: torch.dtype | None = None) -> None:
        super().__init__(config, compute_dtype)
        ops, factory = operations, {"device": device, "dtype": dtype}
        enc, dec, rows = config.encoder_embed_dim, config.decoder_embed_dim, config.seq_len + config.buffer_size
        self.class_emb = ops.Embedding(config.class_num, enc, **factory)
        self.fake_latent = nn.Parameter(torch.empty(1, enc, **factory))
        self.z_proj = ops.Linear(config.token_dim, enc, **factory)
        self.z_proj_ln = ops.LayerNorm(enc, eps=NORM_EPS, **factory)
        self.encoder_pos_embed_learned = nn.Parameter(torch.empty(1, rows, enc, **factory))
        self.encoder_blocks = nn.ModuleList(
            Block(enc, config.encoder_num_heads, config.mlp_ratio, ops, **factory) for _ in range(config.encoder_depth))
        self.encoder_norm = ops.LayerNorm(enc, eps=NORM_EPS, **factory)
        self.decoder_embed = ops.Linear(enc, dec, **factory)
        self.mask_token = nn.Parameter(torch.empty(1, 1, dec, **factory))
        self.decoder_pos_embed_learned = nn.Parameter(torch.empty(1, rows, dec, **factory))
        self.decoder_blocks = nn.ModuleList(
            Block(dec, config.decoder_num_heads, config.mlp_ratio, ops, **factory) for _ in range(config.decoder_depth))
        self.decoder_norm = ops.LayerNorm(dec, eps=NORM_EPS, **factory)
        self.diffusion_pos_embed_learned = nn.Parameter(torch.empty(1, config.seq_len, dec, **factory))
        self.diffloss = DiffLoss(config, ops, **factory)

    def class_embedding(self, labels: Tensor | None, batch: int) -> Tensor:
        """``class_emb(labels)`` (B, D_enc), or the learned null embedding ``fake_latent`` when ``labels`` is None."""
        if labels is None:
            return self.fake_latent.to(self.activation_dtype).expand(batch, -1)
        return self.class_emb(labels).to(self.activation_dtype)

    def encode(self, tokens: Tensor, mask: Tensor, class_embedding: Tensor) -> Tensor:
        """Tokens (B, L, C), mask (B, L) 1 = unknown (equal count per row), class rows (B, D) -> (B, buffer + kept, D).

        The class vector fills all ``buffer_size`` leading rows; unknown positions are dropped before the blocks.
        """
        dtype, buffer = self.activation_dtype, self.config.buffer_size
        x = self.z_proj(tokens.to(dtype))  # (B, L, D)
        batch, _, width = x.shape
        x = torch.cat([class_embedding.to(dtype)[:, None].expand(batch, buffer, width), x], dim=1)  # (B, buffer+L, D)
        x = self.z_proj_ln(x + self.encoder_pos_embed_learned.to(dtype))
        keep = torch.cat([mask.new_zeros(batch, buffer), mask], dim=1) == 0  # (B, buffer+L)
        x = x[keep].reshape(batch, -1, width)  # row order preserved
        for block in self.encoder_blocks:
            x = block(x)
        return self.encoder_norm(x)

    def decode(self, encoded: Tensor, mask: Tensor) -> Tensor:
        """Scatter the encoder rows back among mask tokens, decode, drop the buffer -> z (B, L, D_dec)."""
        x = self.decoder_embed(encoded)  # (B, kept, D_dec)
        batch, buffer = mask.shape[0], self.config.buffer_size
        keep = torch.cat([mask.new_zeros(batch, buffer), mask], dim=1) == 0  # (B, buffer+L)
        full = self.mask_token.to(x.dtype).expand(batch, keep.shape[1], -1).clone()  # (B, buffer+L, D_dec)
        full[keep] = x.reshape(-1, x.shape[-1])
        x = full + self.decoder_pos_embed_learned.to(x.dtype)
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_norm(x)[:, buffer:] + self.diffusion_pos_embed_learned.to(x.dtype)

    def forward(self, tokens: Tensor, mask: Tensor, class_embedding: Tensor) -> Tensor:
        return self.decode(self.encode(tokens, mask, class_embedding), mask)

    def denoise(self, x: Tensor, timesteps: Tensor, z: Tensor) -> Tensor:
        """The diffusion MLP on noisy tokens ``x`` (N, C) at original timesteps (N,) given ``z`` (N, D_dec);
        returns (N, 2C) float32 (eps, variance interpolation)."""
        dtype = self.activation_dtype
        return self.diffloss.net(x.to(dtype), timesteps, z.to(dtype)).float()
