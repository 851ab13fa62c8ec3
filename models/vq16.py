"""LlamaGen's VQ-16 image tokenizer (ARPG's): conv encoder, l2-normalised codebook, conv decoder.

Sun et al., "Autoregressive Model Beats Diffusion: Llama for Scalable Image Generation" (arXiv 2406.06525); names
and shapes follow ``tokenizer/tokenizer_image/vq_model.py`` of FoundationVision/LlamaGen (copied as
``models/vq_model.py`` into hp-l33/ARPG @ 1a1758c) so ``vq_ds16_c2i.pt`` loads strictly. The official ``VQModel``
hard-codes ``ch=128`` and ``num_res_blocks=2`` inside its Encoder/Decoder; here they are configuration, with
those values in the release preset.

Images are ``[-1, 1]``; each ``2^(levels-1)`` pixel square becomes one token. Both the latent vectors and the
codebook rows are l2-normalised before the nearest code is chosen, and decoding gathers normalised rows.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import Operations, ReleasedModel
from .ldm_blocks import AttnBlock, Downsample, ResnetBlock, Upsample, group_norm

USAGE_BUFFER = 65536  # ``codebook_used``: a training statistic the checkpoint carries, fixed size officially
# Official ``ModelArgs`` names with no effect at inference (or that this port does not vary).
TRAINING_ONLY_ARGS = frozenset({"commit_loss_beta", "entropy_loss_ratio", "dropout_p"})


@dataclass(frozen=True)
class VQConfig:
    """Encoder/Decoder and quantizer sizes (official names; ``ch`` and ``num_res_blocks`` are hard-coded there)."""

    codebook_size: int = 16384
    codebook_embed_dim: int = 8
    z_channels: int = 256
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    codebook_l2_norm: bool = True
    codebook_show_usage: bool = True

    @classmethod
    def from_params(cls, params: dict) -> VQConfig:
        """Build from official names; ``encoder_ch_mult``/``decoder_ch_mult`` (which must agree) give ``ch_mult``."""
        params = dict(params)
        mults = {tuple(params.pop(name)) for name in ("encoder_ch_mult", "decoder_ch_mult") if name in params}
        if len(mults) > 1:
            raise ValueError(f"encoder and decoder channel multipliers differ: {sorted(mults)}")
        if mults:
            params["ch_mult"] = mults.pop()
        if params.get("norm_type", "group") != "group":
            raise ValueError(f"only GroupNorm tokenizers are supported, got norm_type={params['norm_type']!r}")
        params.pop("norm_type", None)
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(params) - known - TRAINING_ONLY_ARGS)
        if unknown:
            raise ValueError(f"unknown VQ tokenizer parameters {unknown}")
        chosen = {name: value for name, value in params.items() if name in known}
        if "ch_mult" in chosen:
            chosen["ch_mult"] = tuple(chosen["ch_mult"])
        return cls(**chosen)

    @property
    def downsample(self) -> int:
        """Pixels per token side (16 for VQ-16)."""
        return 2 ** (len(self.ch_mult) - 1)


class Level(nn.Module):
    """One resolution of the encoder or decoder: residual blocks, attention after each where present, resampling."""

    def __init__(self, res: list[nn.Module], attn: list[nn.Module], *, downsample: nn.Module | None = None,
                 upsample: nn.Module | None = None) -> None:
        super().__init__()
        self.res = nn.ModuleList(res)
        self.attn = nn.ModuleList(attn)
        self.downsample = downsample
        self.upsample = upsample

    def forward(self, x: Tensor) -> Tensor:
        for index, block in enumerate(self.res):
            x = block(x)
            if len(self.attn):
                x = self.attn[index](x)
        for resample in (self.downsample, self.upsample):
            if resample is not None:
                x = resample(x)
        return x


def middle(channels: int, ops: Operations, **factory) -> nn.ModuleList:
    """``mid``: Resnet, Attn, Resnet at the bottleneck width."""
    return nn.ModuleList([ResnetBlock(channels, channels, ops, **factory), AttnBlock(channels, ops, **factory),
                          ResnetBlock(channels, channels, ops, **factory)])


class Encoder(nn.Module):
    def __init__(self, config: VQConfig, ops: Operations, **factory) -> None:
        super().__init__()
        ch, mults, last = config.ch, config.ch_mult, len(config.ch_mult) - 1
        self.conv_in = ops.Conv2d(3, ch, 3, padding=1, **factory)
        levels, width = [], ch
        for index, mult in enumerate(mults):
            res, attn = [], []
            for _ in range(config.num_res_blocks):
                res.append(ResnetBlock(width, ch * mult, ops, **factory))
                width = ch * mult
                if index == last:
                    attn.append(AttnBlock(width, ops, **factory))
            downsample = Downsample(width, ops, **factory) if index != last else None
            levels.append(Level(res, attn, downsample=downsample))
        self.conv_blocks = nn.ModuleList(levels)
        self.mid = middle(width, ops, **factory)
        self.norm_out = group_norm(width, ops, **factory)
        self.conv_out = ops.Conv2d(width, config.z_channels, 3, padding=1, **factory)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, config: VQConfig, ops: Operations, **factory) -> None:
        super().__init__()
        ch, mults, last = config.ch, config.ch_mult, len(config.ch_mult) - 1
        width = ch * mults[last]
        self.conv_in = ops.Conv2d(config.z_channels, width, 3, padding=1, **factory)
        self.mid = middle(width, ops, **factory)
        levels = []
        for index in reversed(range(len(mults))):  # conv_blocks.0 is the coarsest level
            res, attn = [], []
            for _ in range(config.num_res_blocks + 1):
                res.append(ResnetBlock(width, ch * mults[index], ops, **factory))
                width = ch * mults[index]
                if index == last:
                    attn.append(AttnBlock(width, ops, **factory))
            upsample = Upsample(width, ops, **factory) if index != 0 else None
            levels.append(Level(res, attn, upsample=upsample))
        self.conv_blocks = nn.ModuleList(levels)
        self.norm_out = group_norm(width, ops, **factory)
        self.conv_out = ops.Conv2d(width, 3, 3, padding=1, **factory)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest codebook row by squared distance, both sides l2-normalised (when ``codebook_l2_norm``)."""

    def __init__(self, config: VQConfig, ops: Operations, **factory) -> None:
        super().__init__()
        self.l2_norm = config.codebook_l2_norm
        self.embedding = ops.Embedding(config.codebook_size, config.codebook_embed_dim, **factory)
        if config.codebook_show_usage:
            self.register_buffer("codebook_used", torch.zeros(USAGE_BUFFER, **factory))

    def codebook(self, device: torch.device) -> Tensor:
        """float32 (K, C) rows as used for lookups (normalised), read directly so casting ops cannot reshape it."""
        rows = self.embedding.weight.to(device=device, dtype=torch.float32)
        return F.normalize(rows, dim=-1) if self.l2_norm else rows

    def indices(self, z: Tensor) -> Tensor:
        """Code index (B, h, w) of each latent vector of ``z`` (B, C, h, w), computed in float32."""
        vectors = z.float().permute(0, 2, 3, 1)  # (B, h, w, C)
        if self.l2_norm:
            vectors = F.normalize(vectors, dim=-1)
        codebook = self.codebook(z.device)  # (K, C)
        distance = (vectors.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(-1)
                    - 2 * vectors @ codebook.T)  # (B, h, w, K)
        return distance.argmin(dim=-1)

    def entries(self, indices: Tensor) -> Tensor:
        """Codebook vectors (B, C, h, w) float32 of ``indices`` (B, h, w)."""
        return self.codebook(indices.device)[indices].permute(0, 3, 1, 2)


class VQModel(ReleasedModel):
    """Images [-1, 1] <-> token grids; ``encode_indices`` and ``decode_indices`` are what ARPG needs."""

    DTYPE_REFERENCE = "quant_conv.weight"

    def __init__(
        self,
        config: VQConfig,
        *,
        operations: Operations = nn,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(config, compute_dtype)
        ops, factory = operations, {"device": device, "dtype": dtype}
        self.encoder = Encoder(config, ops, **factory)
        self.decoder = Decoder(config, ops, **factory)
        self.quantize = VectorQuantizer(config, ops, **factory)
        self.quant_conv = ops.Conv2d(config.z_channels, config.codebook_embed_dim, 1, **factory)
        self.post_quant_conv = ops.Conv2d(config.codebook_embed_dim, config.z_channels, 1, **factory)

    def encode_indices(self, images: Tensor) -> Tensor:
        """Token grid (B, H/16, W/16) int64 of ``images`` (B, 3, H, W) in [-1, 1]."""
        latent = self.quant_conv(self.encoder(images.to(self.activation_dtype)))  # (B, C, h, w)
        return self.quantize.indices(latent)

    def decode(self, codes: Tensor) -> Tensor:
        """Images (B, 3, H, W) float32, nominally [-1, 1] and not clamped, from code vectors (B, C, h, w)."""
        return self.decoder(self.post_quant_conv(codes.to(self.activation_dtype))).float()

    def decode_indices(self, indices: Tensor) -> Tensor:
        """Images (B, 3, 16h, 16w) float32 from a token grid (B, h, w)."""
        return self.decode(self.quantize.entries(indices))
