"""Loading ARPG's release files: ``arpg_*.pt`` (``{'state_dict': ...}``) and LlamaGen's ``vq_ds16_c2i.pt``
(``{'model': ...}``), each configured by a ``<checkpoint>.json`` sidecar or by the release preset its shapes match.

Every ARPG projection is (dim, dim), so the weights cannot tell the head count; the preset table maps each released
width to its heads (``ARPG_L/XL/XXL`` in hp-l33/ARPG ``models/arpg.py``). The tokenizer preset is the official
``VQ_16``; a sidecar for another tokenizer uses the official names plus ``ch`` and ``num_res_blocks``, which the
official classes hard-code.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from . import Operations
from .arpg import ARPGConfig, ARPGTransformer
from .checkpoint import load_checkpoint, load_strict
from .config import resolve_config
from .vq16 import VQConfig, VQModel

ARPG_PRESETS: dict[str, ARPGConfig] = {
    "ARPG-L": ARPGConfig(dim=1024, n_layer=24, n_head=16),
    "ARPG-XL": ARPGConfig(dim=1280, n_layer=36, n_head=20),
    "ARPG-XXL": ARPGConfig(dim=1536, n_layer=48, n_head=24),
}
VQ_PRESETS: dict[str, VQConfig] = {"VQ-16": VQConfig()}

Config = TypeVar("Config")
Model = TypeVar("Model", bound=nn.Module)


def _load_release(path: Path, family: str, presets: Mapping[str, Config], model_class: Callable[..., Model],
                  from_sidecar: Callable[[dict], Config], dtype: torch.dtype, operations: Operations,
                  compute_dtype: torch.dtype | None) -> tuple[Model, str]:
    state_dict = load_checkpoint(path, family)
    config, source = resolve_config(path, state_dict, presets=presets, build=model_class, from_sidecar=from_sidecar)
    state_dict = {name: value.to(dtype) for name, value in state_dict.items()}
    with torch.device("meta"):
        model = model_class(config, operations=operations, dtype=dtype, compute_dtype=compute_dtype)
    load_strict(model, state_dict, source=str(path))
    return model.eval(), source


def load_arpg(path: Path, *, dtype: torch.dtype = torch.float32, operations: Operations = nn,
              compute_dtype: torch.dtype | None = None) -> tuple[ARPGTransformer, str]:
    """The transformer of ``path`` built in ``dtype`` and loaded strictly (eval mode), and where its config came from
    (sidecar path or ``preset <name>``)."""
    return _load_release(path, "arpg", ARPG_PRESETS, ARPGTransformer, ARPGConfig.from_model_args, dtype, operations,
                         compute_dtype)


def load_vq(path: Path, *, dtype: torch.dtype = torch.float32, operations: Operations = nn,
            compute_dtype: torch.dtype | None = None) -> tuple[VQModel, str]:
    """The tokenizer of ``path`` built in ``dtype`` and loaded strictly (eval mode), and where its config came from."""
    return _load_release(path, "vq", VQ_PRESETS, VQModel, VQConfig.from_params, dtype, operations, compute_dtype)
