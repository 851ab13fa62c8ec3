"""What a checkpoint of each family looks like: its container, its telltale keys, and where it belongs.

Containers follow the official releases: PixelFlow's ``model.pt`` is a flat state dict; MAR's
``checkpoint-last.pth`` holds ``model`` and ``model_ema`` (plus training extras such as an ``argparse.Namespace``
under ``args``); ARPG's ``arpg_*.pt`` holds ``state_dict`` (the official sampler also accepts ``model`` and
``module``, ``sample_c2i_ddp.py``); LlamaGen's ``vq_ds16_c2i.pt`` and MAR's ``kl16.ckpt`` hold ``model``.
Flat state dicts (e.g. safetensors conversions) are accepted for every family.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class CheckpointFamily:
    """How one family stores its weights, and how to tell its state dicts apart from the others'."""

    key: str  # model-folder name and short id
    title: str  # human name used in messages
    containers: tuple[str, ...]  # top-level keys holding the state dict, in order of preference
    signature: tuple[str, ...]  # key prefixes that all occur in this family's state dicts and in no other's
    loader: str  # the node a user should load such a file with
    where_to_get: str  # official source of the release files


# Plain-data classes that official training checkpoints carry beside the weights (MAR saves its ``args``).
# Allowed while reading any family's file, so a file given to the wrong loader still gets a family hint.
RELEASE_EXTRAS: tuple[type, ...] = (argparse.Namespace,)

FAMILIES: dict[str, CheckpointFamily] = {
    family.key: family
    for family in (
        CheckpointFamily(
            key="pixelflow",
            title="PixelFlow",
            containers=(),
            signature=("transformer_blocks.", "latent_size_embedder."),
            loader="PixelFlow Loader (FlowAR), files in models/pixelflow",
            where_to_get="Hugging Face ShoufaChen/PixelFlow-Class2Image or -Text2Image (model.pt + config.yaml)",
        ),
        CheckpointFamily(
            key="mar",
            title="MAR",
            containers=("model_ema", "model"),
            signature=("diffloss.net.", "z_proj."),
            loader="MAR Loader (FlowAR), files in models/mar",
            where_to_get="LTH14/mar README: mar_base / mar_large / mar_huge checkpoint-last.pth",
        ),
        CheckpointFamily(
            key="arpg",
            title="ARPG",
            containers=("state_dict", "model", "module"),
            signature=("layers.self_dec.", "layers.cross_dec."),
            loader="ARPG Loader (FlowAR), files in models/arpg",
            where_to_get="hp-l33/ARPG README: arpg_300m.pt / arpg_700m.pt / arpg_1b.pt",
        ),
        CheckpointFamily(
            key="vq",
            title="LlamaGen VQ-16 tokenizer",
            containers=("model",),
            signature=("quantize.embedding.", "encoder.conv_blocks."),
            loader="VQ Tokenizer Loader (FlowAR), files in models/vq",
            where_to_get="FoundationVision/LlamaGen: vq_ds16_c2i.pt",
        ),
        CheckpointFamily(
            key="kl16",
            title="MAR KL-16 VAE",
            containers=("model",),
            signature=("encoder.down.", "decoder.up."),
            loader="MAR VAE Loader (FlowAR), files in models/vq",
            where_to_get="LTH14/mar README: kl16.ckpt",
        ),
    )
}


def is_state_dict(obj: object) -> bool:
    """A non-empty mapping from string names to tensors."""
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, Tensor) for k, v in obj.items())
    )


def matches(family: CheckpointFamily, state_dict: Mapping[str, Tensor]) -> bool:
    """Whether every signature prefix of ``family`` occurs among the keys."""
    return all(any(name.startswith(prefix) for name in state_dict) for prefix in family.signature)


def identify(obj: object) -> CheckpointFamily | None:
    """The family whose signature a loaded file (flat, or any of its containers) carries; None if none does."""
    candidates = [obj] if is_state_dict(obj) else []
    if isinstance(obj, Mapping):
        candidates += [value for value in obj.values() if is_state_dict(value)]
    for state_dict in candidates:
        for family in FAMILIES.values():
            if matches(family, state_dict):
                return family
    return None
