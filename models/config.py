"""Where a model's configuration comes from: sidecar file > release preset matching the weights > clear error.

A sidecar is a file beside the checkpoint holding the official constructor arguments: ``config.yaml`` as PixelFlow
ships it, or ``<checkpoint stem>.json``. Without one, every named release preset is built (on the meta device, so
nothing is allocated) and compared with the state dict's shapes; exactly one must match, since what the weights
cannot tell (e.g. head counts) then comes from that preset.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import torch
import yaml
from torch import Tensor, nn

from .checkpoint import CheckpointError, state_dict_mismatch

Config = TypeVar("Config")


def find_sidecar(checkpoint: Path, extra_names: Sequence[str] = ()) -> Path | None:
    """``<stem>.json`` beside the checkpoint, else the first of ``extra_names`` (e.g. ``config.yaml``) there."""
    for candidate in [checkpoint.with_suffix(".json"), *(checkpoint.parent / name for name in extra_names)]:
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(path: Path) -> dict:
    """Parse a JSON or YAML sidecar into a dict, with a one-line error naming the file when it is malformed."""
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        raise CheckpointError(f"config file {path} cannot be read: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"config file {path} does not hold a mapping of settings")
    return data


def match_preset(
    state_dict: Mapping[str, Tensor],
    presets: Mapping[str, Config],
    build: Callable[[Config], nn.Module],
    *,
    source: str,
) -> tuple[str, Config]:
    """The one preset whose model has exactly the state dict's keys and shapes."""
    verdicts: dict[str, str | None] = {}
    for name, config in presets.items():
        with torch.device("meta"):
            verdicts[name] = state_dict_mismatch(build(config), state_dict)
    fitting = [name for name, report in verdicts.items() if report is None]
    if len(fitting) == 1:
        return fitting[0], presets[fitting[0]]
    if len(fitting) > 1:
        raise CheckpointError(
            f"{source} fits several presets ({', '.join(fitting)}) that differ in what the weights cannot tell: "
            "put the official config file beside the checkpoint"
        )
    tried = "; ".join(f"{name}: {report.splitlines()[0]}" for name, report in verdicts.items() if report)
    raise CheckpointError(
        f"{source} matches no known release configuration and has no config file beside it ({tried}); "
        "put the official config file beside the checkpoint"
    )


def resolve_config(
    checkpoint: Path,
    state_dict: Mapping[str, Tensor],
    *,
    presets: Mapping[str, Config],
    build: Callable[[Config], nn.Module],
    from_sidecar: Callable[[dict], Config],
    sidecar_names: Sequence[str] = (),
) -> tuple[Config, str]:
    """The configuration for ``checkpoint`` and where it came from (the sidecar's path or ``preset <name>``)."""
    sidecar = find_sidecar(checkpoint, sidecar_names)
    if sidecar is not None:
        settings = read_sidecar(sidecar)
        try:
            return from_sidecar(settings), str(sidecar)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"config file {sidecar} has unexpected content: {err!r}") from None
    name, config = match_preset(state_dict, presets, build, source=str(checkpoint))
    return config, f"preset {name}"
