"""Writers of tiny checkpoints in each family's official container, with the sidecar config beside them.

The containers are written out here independently of the pack's loading code, as the official releases store
them, so the loader tests check the pack against the releases rather than against itself.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path

import torch
import yaml
from torch import Tensor


def _perturbed(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {name: value + 1 if value.is_floating_point() else value.clone() for name, value in state_dict.items()}


def write_pixelflow(folder: Path, state_dict: Mapping[str, Tensor], params: Mapping | None = None) -> Path:
    """``model.pt`` (flat state dict) and, when ``params`` are given, ``config.yaml`` as the release ships them."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(dict(state_dict), folder / "model.pt")
    if params is not None:
        config = {"model": {"target": "pixelflow.model.PixelFlowModel", "params": dict(params)}}
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "model.pt"


def write_mar(path: Path, state_dict: Mapping[str, Tensor], config: Mapping | None = None) -> Path:
    """A training checkpoint: ``model`` (deliberately different), ``model_ema``, ``epoch`` and an ``args`` Namespace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    container = {
        "model": _perturbed(state_dict),
        "model_ema": dict(state_dict),
        "epoch": 399,
        "args": argparse.Namespace(model="mar_base", img_size=256),
    }
    torch.save(container, path)
    _write_json_sidecar(path, config)
    return path


def write_arpg(path: Path, state_dict: Mapping[str, Tensor], config: Mapping | None = None) -> Path:
    """``{'state_dict': ...}`` as ``arpg_*.pt``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": dict(state_dict)}, path)
    _write_json_sidecar(path, config)
    return path


def write_model_container(path: Path, state_dict: Mapping[str, Tensor], config: Mapping | None = None) -> Path:
    """``{'model': ...}`` as LlamaGen's ``vq_ds16_c2i.pt`` and MAR's ``kl16.ckpt``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": dict(state_dict)}, path)
    _write_json_sidecar(path, config)
    return path


def _write_json_sidecar(path: Path, config: Mapping | None) -> None:
    if config is not None:
        path.with_suffix(".json").write_text(json.dumps(dict(config)))


def family_state_dict(family: str) -> dict[str, Tensor]:
    """A small state dict carrying ``family``'s telltale key names (for container and wrong-family tests)."""
    names = {
        "pixelflow": ["transformer_blocks.0.attn1.to_q.weight", "latent_size_embedder.linear_1.weight"],
        "mar": ["diffloss.net.input_proj.weight", "z_proj.weight"],
        "arpg": ["layers.self_dec.0.attn.to_q.weight", "layers.cross_dec.0.attn.to_q.weight"],
        "vq": ["quantize.embedding.weight", "encoder.conv_blocks.0.res.0.conv1.weight"],
        "kl16": ["encoder.down.0.block.0.conv1.weight", "decoder.up.0.block.0.conv1.weight"],
    }[family]
    generator = torch.Generator().manual_seed(len(family))
    return {name: torch.randn(2, 2, generator=generator) for name in names}
