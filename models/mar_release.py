"""Loading MAR releases (``checkpoint-last.pth``: ``model`` + ``model_ema`` + training extras) and the KL-16 VAE.

The official factories (``mar_base/large/huge`` in LTH14/mar ``models/mar.py``) fix widths, depths and heads; the
diffusion MLP's depth and width are passed per checkpoint on the command line (README: B 6x1024, L 8x1280,
H 12x1536), so they are read from the state dict, as is every other size. Only the head counts are invisible in
the weights: they come from a ``<checkpoint>.json`` sidecar, else from the released width -> heads table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from . import Operations
from .checkpoint import CheckpointError, cast_floating, load_checkpoint, load_strict
from .config import find_sidecar, read_sidecar, resolve_config
from .kl16 import AutoencoderKL, KL16Config
from .mar import MAR, MARConfig

RELEASED_HEADS = {768: 12, 1024: 16, 1280: 16}  # encoder/decoder width -> heads of mar_base / large / huge
WEIGHT_CHOICES = ("model_ema", "model")  # the official sampler uses the EMA weights
KL16_PRESETS = {"MAR KL-16 (kl16.ckpt)": KL16Config()}


def _count_blocks(state_dict: Mapping[str, Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for name in state_dict if (m := pattern.match(name))})


def mar_config_from_weights(
    state_dict: Mapping[str, Tensor], settings: Mapping | None = None, *, source: str = "the settings"
) -> MARConfig:
    """Every size from the tensors; heads (and geometry the weights cannot tell) from ``settings`` (official
    constructor arguments, e.g. a sidecar named by ``source``) or the release table."""
    settings = dict(settings or {})
    try:
        encoder_width = state_dict["class_emb.weight"].shape[1]
        decoder_width = state_dict["decoder_embed.weight"].shape[0]
        seq_len = state_dict["diffusion_pos_embed_learned"].shape[1]
        inferred = {
            "class_num": state_dict["class_emb.weight"].shape[0],
            "encoder_embed_dim": encoder_width,
            "encoder_depth": _count_blocks(state_dict, "encoder_blocks."),
            "decoder_embed_dim": decoder_width,
            "decoder_depth": _count_blocks(state_dict, "decoder_blocks."),
            "diffloss_w": state_dict["diffloss.net.input_proj.weight"].shape[0],
            "diffloss_d": _count_blocks(state_dict, "diffloss.net.res_blocks."),
            "buffer_size": state_dict["encoder_pos_embed_learned"].shape[1] - seq_len,
            "mlp_ratio": state_dict["encoder_blocks.0.mlp.fc1.weight"].shape[0] / encoder_width,
        }
    except KeyError as err:
        raise CheckpointError(f"not a MAR state dict: {err.args[0]!r} is missing") from None
    for side, width in (("encoder", encoder_width), ("decoder", decoder_width)):
        key = f"{side}_num_heads"
        if key not in settings:
            if width not in RELEASED_HEADS:
                raise CheckpointError(
                    f"MAR {side} width {width} is not a released size: put a JSON file with the official constructor "
                    f"arguments ({key} etc.) beside the checkpoint")
            settings[key] = RELEASED_HEADS[width]
    try:
        config = MARConfig.from_params({**settings, **inferred})
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{source} has unexpected content: {err}") from None
    if config.seq_len != seq_len:
        raise CheckpointError(f"the weights hold {seq_len} token positions but img_size {config.img_size}, vae_stride "
                              f"{config.vae_stride} and patch_size {config.patch_size} give {config.seq_len}")
    return config


def load_mar(
    path: Path,
    *,
    weights: str = "model_ema",
    dtype: torch.dtype = torch.float32,
    operations: Operations = nn,
    compute_dtype: torch.dtype | None = None,
) -> tuple[MAR, str]:
    """Build and strictly load a MAR checkpoint's ``weights`` entry; returns the model and its config's source."""
    if weights not in WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}")
    state_dict = load_checkpoint(path, "mar", container=weights)
    sidecar = find_sidecar(path)
    settings = read_sidecar(sidecar) if sidecar is not None else None
    config = mar_config_from_weights(state_dict, settings, source=str(sidecar))
    with torch.device("meta"):
        model = MAR(config, operations=operations, dtype=dtype, compute_dtype=compute_dtype)
    load_strict(model, cast_floating(state_dict, dtype), source=f"{path} [{weights}]")
    return model.eval(), str(sidecar) if sidecar else "weights + released head table"


def load_kl16(path: Path, *, dtype: torch.dtype = torch.float32, operations: Operations = nn
              ) -> tuple[AutoencoderKL, str]:
    """Build and strictly load the KL-16 VAE (``{'model': ...}``); config from a sidecar or the release."""
    state_dict = load_checkpoint(path, "kl16")
    config, source = resolve_config(path, state_dict, presets=KL16_PRESETS, build=AutoencoderKL,
                                    from_sidecar=KL16Config.from_params)
    with torch.device("meta"):
        vae = AutoencoderKL(config, operations=operations, dtype=dtype)
    load_strict(vae, cast_floating(state_dict, dtype), source=str(path))
    return vae.eval(), source
