"""Safe checkpoint reading, container unwrapping and strict loading with a readable report.

Pickled files are read with ``torch.load(weights_only=True)``; the few harmless non-tensor classes the releases
carry (MAR's ``argparse.Namespace``) are allowed only for the duration of that one load, through the
``torch.serialization.safe_globals`` context, never process-wide. Every failure is a :class:`CheckpointError`
whose first line says what is wrong with which file. Loading is strict (cf. nanoGPT's checked ``from_pretrained``):
a silent partial load would turn a wrong file into noise images instead of an error.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .families import FAMILIES, RELEASE_EXTRAS, CheckpointFamily, identify, is_state_dict

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
CHECKPOINT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # added by DistributedDataParallel and torch.compile
REPORT_LIMIT = 8  # keys listed per category in a mismatch report


class CheckpointError(ValueError):
    """A checkpoint file cannot be used; the first line of the message is the cause."""


def read_checkpoint(path: str | Path, *, allowed_globals: Sequence[type] = ()) -> object:
    """Read a checkpoint file onto the CPU without executing code from it.

    ``.safetensors`` files give a flat state dict; pickles (``.pt .pth .ckpt .bin``) give whatever object was saved,
    restricted to tensors, containers and ``allowed_globals``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return _read_safetensors(path)
    if suffix in PICKLE_SUFFIXES:
        return _read_pickle(path, allowed_globals)
    raise CheckpointError(
        f"{path.name}: unsupported checkpoint extension {suffix!r} (expected one of {', '.join(CHECKPOINT_SUFFIXES)})"
    )


def _read_safetensors(path: Path) -> dict[str, Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is not a valid safetensors file ({first_line(err)}); it may be truncated: download it again"
        ) from None


def _read_pickle(path: Path, allowed_globals: Sequence[type]) -> object:
    zipped = zipfile.is_zipfile(path)  # torch's default format; memory-map it so large files are not copied
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=zipped)
    except pickle.UnpicklingError as err:
        refused = re.search(r"GLOBAL ([\w.]+)", str(err))
        if refused:
            raise CheckpointError(
                f"refused to load {path}: it needs the Python object {refused.group(1)}, which is not allowed in a "
                "weights-only load (nothing from the file was executed); if you trust it, convert it to .safetensors"
            ) from None
        raise CheckpointError(f"{path} is not a readable checkpoint ({first_line(err)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError, IndexError, KeyError) as err:  # corrupt pickles
        raise CheckpointError(
            f"{path} is not a readable checkpoint ({first_line(err)}); it may be truncated or not a model file"
        ) from None


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def unwrap_state_dict(
    obj: object, family: CheckpointFamily, *, source: str, container: str | None = None
) -> dict[str, Tensor]:
    """Take ``family``'s state dict out of a loaded file (its container, or the file itself when flat).

    ``container`` forces one key (e.g. MAR's ``model`` instead of ``model_ema``). Wrapper prefixes from DDP or
    ``torch.compile`` are removed. A file of another family is refused with a hint naming its loader.
    """
    state_dict = _select_container(obj, family, source=source, container=container)
    other = identify(state_dict)
    if other is not None and other.key != family.key:
        raise CheckpointError(
            f"{source} looks like a {other.title} checkpoint, not {family.title}: load it with {other.loader}"
        )
    return strip_wrapper_prefixes(state_dict)


def _select_container(
    obj: object, family: CheckpointFamily, *, source: str, container: str | None
) -> Mapping[str, Tensor]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict")
    if container is not None:
        if container not in obj:
            raise CheckpointError(f"{source} has no {container!r} entry (top-level keys: {preview_names(list(obj))})")
        chosen = obj[container]
    elif is_state_dict(obj):
        chosen = obj
    else:
        present = [name for name in family.containers if name in obj]
        if not present:
            other = identify(obj)
            hint = f"; it looks like a {other.title} checkpoint: load it with {other.loader}" if other else ""
            expected = " or ".join(repr(c) for c in family.containers) or "a flat state dict"
            raise CheckpointError(
                f"{source} is not a {family.title} checkpoint: expected {expected}, "
                f"found top-level keys {preview_names([str(k) for k in obj])}{hint}"
            )
        chosen = obj[present[0]]
    if not is_state_dict(chosen):
        raise CheckpointError(f"{source}: the selected entry is not a mapping of parameter names to tensors")
    return chosen


def strip_wrapper_prefixes(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Remove a ``module.`` / ``_orig_mod.`` prefix shared by every key."""
    result = dict(state_dict)
    for prefix in WRAPPER_PREFIXES:
        if all(name.startswith(prefix) for name in result):
            result = {name[len(prefix):]: value for name, value in result.items()}
    return result


def load_checkpoint(
    path: str | Path, family_key: str, *, container: str | None = None
) -> dict[str, Tensor]:
    """Read ``path`` safely and return ``family_key``'s state dict from it (see :func:`unwrap_state_dict`)."""
    family = FAMILIES[family_key]
    obj = read_checkpoint(path, allowed_globals=RELEASE_EXTRAS)
    return unwrap_state_dict(obj, family, source=str(path), container=container)


def cast_floating(state_dict: Mapping[str, Tensor], dtype: torch.dtype) -> dict[str, Tensor]:
    """The state dict with its floating-point tensors in ``dtype`` (integer buffers untouched)."""
    return {name: value.to(dtype) if value.is_floating_point() else value for name, value in state_dict.items()}


def state_dict_mismatch(module: nn.Module, state_dict: Mapping[str, Tensor]) -> str | None:
    """A report of missing, unexpected and mis-shaped keys, or None when ``state_dict`` fits ``module`` exactly."""
    expected = module.state_dict()
    missing = [name for name in expected if name not in state_dict]
    unexpected = [name for name in state_dict if name not in expected]
    misshaped = [
        f"{name}: file {tuple(state_dict[name].shape)} vs model {tuple(expected[name].shape)}"
        for name in expected
        if name in state_dict and state_dict[name].shape != expected[name].shape
    ]
    if not (missing or unexpected or misshaped):
        return None
    summary = f"{len(missing)} missing, {len(unexpected)} unexpected, {len(misshaped)} mis-shaped keys"
    lines = [summary]
    for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)):
        if items:
            lines.append(f"  {title}: {preview_names(items)}")
    return "\n".join(lines)


def load_strict(module: nn.Module, state_dict: Mapping[str, Tensor], *, source: str) -> nn.Module:
    """Load ``state_dict`` into ``module`` strictly; on any difference raise a report naming the keys.

    Modules built on the meta device receive the file's tensors directly (``assign``), avoiding a second copy.
    """
    report = state_dict_mismatch(module, state_dict)
    if report is not None:
        family = identify(state_dict)
        hint = f"\n  the file looks like a {family.title} checkpoint: load it with {family.loader}" if family else ""
        raise CheckpointError(f"{source} does not fit {type(module).__name__}: {report}{hint}")
    on_meta = any(p.is_meta for p in module.parameters())
    module.load_state_dict(state_dict, strict=True, assign=on_meta)
    return module


def preview_names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:REPORT_LIMIT])
    return shown + (f", … (+{len(items) - REPORT_LIMIT} more)" if len(items) > REPORT_LIMIT else "")
