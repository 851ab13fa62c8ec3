"""MAR's KL-16 VAE: the latent-diffusion KL autoencoder that turns 256 px images into 16x16x16 continuous tokens.

``AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4))`` of LTH14/mar ``models/vae.py`` (adopted from LDM), with its
defaults ch=128, two ResNet blocks per level, attention at the 16 px level in the encoder only (MAR's decoder has
attention only in its middle block), double_z. MAR works on ``mean * 0.2325`` (``engine_mar.py``: "normalize the
std of latent to be 1") and decodes ``tokens / 0.2325``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from . import Operations
from .ldm_blocks import AttnBlock, Downsample, ResnetBlock, Upsample, group_norm

LATENT_SCALE = 0.2325  # MAR's latent normalisation
LOGVAR_RANGE = (-30.0, 20.0)


@dataclass(frozen=True)
class KL16Config:
    """The autoencoder's constructor settings (the official names of ``AutoencoderKL`` / ``Encoder`` / ``Decoder``)."""

    embed_dim: int = 16
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    ch: int = 128
    num_res_blocks: int = 2
    resolution: int = 256  # decides only which level has attention (the one at 16 px)
    encoder_attn_resolutions: tuple[int, ...] = (16,)
    decoder_attn_resolutions: tuple[int, ...] = field(default_factory=tuple)
    in_channels: int = 3
    out_ch: int = 3
    double_z: bool = True

    @property
    def downsampling(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @classmethod
    def from_params(cls, params: dict) -> KL16Config:
        """From constructor arguments; settings that do not change the network (dropout, resamp_with_conv) are
        accepted only at their released values."""
        settings = dict(params)
        released = (settings.pop("dropout", 0.0), settings.pop("resamp_with_conv", True),
                    settings.pop("use_variational", True))
        if released != (0.0, True, True):
            raise ValueError("only dropout 0, resamp_with_conv and use_variational (the released VAE) are supported")
        tuples = ("ch_mult", "encoder_attn_resolutions", "decoder_attn_resolutions")
        return cls(**{k: tuple(v) if k in tuples else v for k, v in settings.items()})


class Level(nn.Module):
    """One resolution level: ResNet blocks, an attention block after each when the level has attention."""

    def __init__(self, channels: list[tuple[int, int]], with_attention: bool, ops: Operations, **factory) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(cin, cout, ops, **factory) for cin, cout in channels)
        self.attn = nn.ModuleList(AttnBlock(cout, ops, **factory) for _, cout in channels) if with_attention \
            else nn.ModuleList()

    def forward(self, x: Tensor) -> Tensor:
        for index, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[index](x)
        return x


class Middle(nn.Module):
    def __init__(self, channels: int, ops: Operations, **factory) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, ops, **factory)
        self.attn_1 = AttnBlock(channels, ops, **factory)
        self.block_2 = ResnetBlock(channels, channels, ops, **factory)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, config: KL16Config, ops: Operations, **factory) -> None:
        super().__init__()
        ch, mult = config.ch, config.ch_mult
        self.conv_in = ops.Conv2d(config.in_channels, ch, kernel_size=3, padding=1, **factory)
        self.down = nn.ModuleList()
        resolution, width = config.resolution, ch
        for level, factor in enumerate(mult):
            out = ch * factor
            channels = [(width if i == 0 else out, out) for i in range(config.num_res_blocks)]
            stage = Level(channels, resolution in config.encoder_attn_resolutions, ops, **factory)
            if level != len(mult) - 1:
                stage.downsample = Downsample(out, ops, **factory)
                resolution //= 2
            self.down.append(stage)
            width = out
        self.mid = Middle(width, ops, **factory)
        self.norm_out = group_norm(width, ops, **factory)
        z_channels = 2 * config.embed_dim if config.double_z else config.embed_dim
        self.conv_out = ops.Conv2d(width, z_channels, kernel_size=3, padding=1, **factory)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            h = stage(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, config: KL16Config, ops: Operations, **factory) -> None:
        super().__init__()
        ch, mult = config.ch, config.ch_mult
        width = ch * mult[-1]
        resolution = config.resolution // config.downsampling
        self.conv_in = ops.Conv2d(config.embed_dim, width, kernel_size=3, padding=1, **factory)
        self.mid = Middle(width, ops, **factory)
        levels: list[Level] = []
        for level in reversed(range(len(mult))):
            out = ch * mult[level]
            channels = [(width if i == 0 else out, out) for i in range(config.num_res_blocks + 1)]
            stage = Level(channels, resolution in config.decoder_attn_resolutions, ops, **factory)
            if level != 0:
                stage.upsample = Upsample(out, ops, **factory)
                resolution *= 2
            levels.insert(0, stage)  # stored lowest level first, as the official ``up`` list
            width = out
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(width, ops, **factory)
        self.conv_out = ops.Conv2d(width, config.out_ch, kernel_size=3, padding=1, **factory)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for stage in reversed(self.up):
            h = stage(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    """Images ``[B, 3, H, W]`` in [-1, 1] <-> latents ``[B, embed_dim, H/16, W/16]`` (16 = 2^(levels-1))."""

    def __init__(self, config: KL16Config, *, operations: Operations = nn, device=None, dtype=None) -> None:
        super().__init__()
        self.config = config
        factory = {"device": device, "dtype": dtype}
        self.encoder = Encoder(config, operations, **factory)
        self.decoder = Decoder(config, operations, **factory)
        self.quant_conv = operations.Conv2d(2 * config.embed_dim, 2 * config.embed_dim, 1, **factory)
        self.post_quant_conv = operations.Conv2d(config.embed_dim, config.embed_dim, 1, **factory)

    def encode_moments(self, image: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior ``(mean, logvar)`` of ``image``; logvar clamped to [-30, 20] as the official posterior."""
        moments = self.quant_conv(self.encoder(image))
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(*LOGVAR_RANGE)

    def encode_tokens(self, image: Tensor) -> Tensor:
        """MAR's latents: the posterior mean times 0.2325 (deterministic: the mean, not a sample)."""
        return self.encode_moments(image)[0] * LATENT_SCALE

    def decode_tokens(self, tokens: Tensor) -> Tensor:
        """Image in ~[-1, 1] from MAR latents (divided by 0.2325 first)."""
        return self.decoder(self.post_quant_conv(tokens / LATENT_SCALE))
