"""Hugging Face model folders read offline: config checks, strict ``from_pretrained``, tokenizers and raw weights.

Shared by the Flan-T5 text encoder and the reward models, which users keep as the folders the Hugging Face hub
serves (``config.json`` + weights + tokenizer files). Nothing is downloaded (``local_files_only``); every failure is a
:class:`~.checkpoint.CheckpointError` whose first line names the folder and what is wrong with it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import transformers
from packaging.version import Version
from safetensors import SafetensorError
from torch import Tensor, nn
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from .checkpoint import CheckpointError, first_line, preview_names, read_checkpoint
from .families import is_state_dict

# ``from_pretrained`` took ``torch_dtype`` until transformers 4.56 renamed it ``dtype`` (transformers PR #39782).
DTYPE_KWARG = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
HF_WEIGHT_FILES = (  # what ``from_pretrained`` looks for, sharded or not, safetensors first
    "model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"
)


def read_hf_config(folder: Path, *, model_types: Sequence[str], title: str, expected: str) -> dict:
    """``folder/config.json`` as a dict, after checking that its ``model_type`` is one of ``model_types`` and that
    the folder holds weights ``from_pretrained`` can find. ``title`` names the model, ``expected`` what to get."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"{folder} holds no config.json, so it is not a Hugging Face model folder; {expected}")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{config_file} is not valid JSON ({first_line(err)}); {expected}") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in model_types:
        raise CheckpointError(f"{config_file} describes a {model_type!r} model, not {title}; {expected}")
    if not any((folder / name).is_file() for name in HF_WEIGHT_FILES):
        raise CheckpointError(f"{folder} has config.json but no weights (expected one of {', '.join(HF_WEIGHT_FILES)})")
    return config


def from_pretrained_strict(model_class: type, folder: Path, *, dtype: torch.dtype, title: str) -> nn.Module:
    """``model_class.from_pretrained(folder)`` offline, refusing a partial load (missing or mis-shaped weights).

    Unexpected keys are allowed: they are the parts of a larger model the class does not use (a decoder, a text
    tower) or buffers older transformers versions saved.
    """
    try:
        model, info = model_class.from_pretrained(
            folder, local_files_only=True, output_loading_info=True, ignore_mismatched_sizes=True,  # reported below
            **{DTYPE_KWARG: dtype},
        )
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # unreadable, truncated or corrupt files
        raise CheckpointError(f"cannot load the {title} in {folder}: {first_line(err)}") from None
    missing = sorted(info.get("missing_keys", ()))
    mismatched = sorted(map(_mismatch_text, info.get("mismatched_keys", ())))
    if missing or mismatched:
        raise CheckpointError(
            f"the weights in {folder} do not fit its config.json: missing {preview_names(missing) or 'none'}; "
            f"mis-shaped {preview_names(mismatched) or 'none'}"
        )
    return model.eval()


def _mismatch_text(item: tuple | str) -> str:
    """One mis-shaped key as ``from_pretrained`` reports it: ``(name, file shape, model shape)``, or only the name."""
    if isinstance(item, str):
        return item
    name, found, expected = item
    return f"{name}: file {tuple(found)} vs model {tuple(expected)}"


def load_tokenizer(
    folders: Sequence[Path], *, files: Sequence[str], title: str, where: str
) -> PreTrainedTokenizerBase:
    """The first folder's tokenizer that loads (``AutoTokenizer``, offline); every failure is named if none does.

    A folder counts only if it holds one of ``files`` (e.g. ``tokenizer.json``), so a model folder without a
    tokenizer is skipped with that reason rather than with transformers' long lookup error.
    """
    tried = []
    for folder in folders:
        if not any((folder / name).is_file() for name in files):
            tried.append(f"{folder} (no {' or '.join(files)})")
            continue
        try:
            return AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except Exception as err:  # transformers and the tokenizers parser raise many types (even plain Exception)
            tried.append(f"{folder} ({first_line(err)})")
    searched = "; ".join(tried) if tried else "no folder was given"
    raise CheckpointError(f"no usable {title} tokenizer (tried: {searched}); get {where}")


def read_folder_weights(folder: Path) -> dict[str, Tensor]:
    """Every tensor of a Hugging Face folder's weights, single file or shards listed by an index, on the CPU.

    For models whose class transformers lacks (CLIP-FlanT5): the caller splits the names and loads each part
    strictly. Pickled ``.bin`` files are read with ``weights_only=True``.
    """
    for name in HF_WEIGHT_FILES:
        path = folder / name
        if not path.is_file():
            continue
        if not name.endswith(".index.json"):
            return _state_dict(read_checkpoint(path), path)
        shards = sorted(set(_weight_map(path).values()))
        state_dict: dict[str, Tensor] = {}
        for shard in shards:
            state_dict.update(_state_dict(read_checkpoint(folder / shard), folder / shard))
        return state_dict
    raise CheckpointError(f"{folder} holds no weights (expected one of {', '.join(HF_WEIGHT_FILES)})")


def _weight_map(index: Path) -> Mapping[str, str]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{index} is not a weights index (no readable 'weight_map': {first_line(err)})") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index} lists no weight files")
    return weight_map


def _state_dict(obj: object, path: Path) -> dict[str, Tensor]:
    if not is_state_dict(obj):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    return dict(obj)
