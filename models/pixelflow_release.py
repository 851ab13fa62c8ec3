"""Loading a PixelFlow release: ``model.pt`` + the ``config.yaml`` beside it (or a matching preset).

The official ``config.yaml`` (``configs/pixelflow_xl_c2i.yaml`` in ShoufaChen/PixelFlow) carries the transformer's
constructor arguments under ``model.params``, the cascade's ``scheduler.num_train_timesteps`` / ``num_stages`` and,
for c2i, the training ``data.resolution``. The released ``model.pt`` is a flat fp32 state dict. Head counts and the
stage count cannot be read from the weights, so without a config file the shapes must match a named preset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import Operations
from .checkpoint import cast_floating, load_checkpoint, load_strict
from .config import resolve_config
from .pixelflow import PixelFlowConfig, PixelFlowModel

SIDECAR_NAMES = ("config.yaml", "config.yml")
XL = {"num_attention_heads": 16, "attention_head_dim": 72, "depth": 28}  # the released width and depth


@dataclass(frozen=True)
class PixelFlowRelease:
    """What a checkpoint's config says: the transformer, the cascade it was trained for and its image size."""

    model: PixelFlowConfig
    num_train_timesteps: int = 1000
    num_stages: int = 4
    resolution: int | None = None  # training size (``data.resolution``), the sampler's natural default

    @property
    def class_conditional(self) -> bool:
        return self.model.num_classes > 0

    @property
    def null_label(self) -> int:
        """The unconditional class row (the official pipeline hard-codes 1000 = ``num_classes``)."""
        return self.model.num_classes


PRESETS: dict[str, PixelFlowRelease] = {
    "PixelFlow-Class2Image XL/4 256px": PixelFlowRelease(
        PixelFlowConfig(**XL, patch_size=4, num_classes=1000), resolution=256),
    "PixelFlow-Text2Image XL/4": PixelFlowRelease(
        PixelFlowConfig(**XL, patch_size=4, cross_attention_dim=2048), resolution=1024),
    "PixelFlow-Text2Image XL/2": PixelFlowRelease(
        PixelFlowConfig(**XL, patch_size=2, cross_attention_dim=2048), resolution=1024),
}


def release_from_settings(settings: dict) -> PixelFlowRelease:
    """Read the official config layout (``model.params``, ``scheduler``, ``data``) from a parsed sidecar."""
    scheduler = settings.get("scheduler") or {}
    resolution = (settings.get("data") or {}).get("resolution")
    return PixelFlowRelease(
        model=PixelFlowConfig.from_params(dict(settings["model"]["params"])),
        num_train_timesteps=int(scheduler.get("num_train_timesteps", 1000)),
        num_stages=int(scheduler.get("num_stages", 4)),
        resolution=int(resolution) if resolution is not None else None,
    )


def load_pixelflow(
    path: Path,
    *,
    dtype: torch.dtype = torch.float32,
    operations: Operations = nn,
    compute_dtype: torch.dtype | None = None,
) -> tuple[PixelFlowModel, PixelFlowRelease, str]:
    """Build the model of ``path`` on the CPU in ``dtype`` and load it strictly.

    Returns the model (eval mode), its release settings and where they came from (config path or preset name).
    """
    state_dict = load_checkpoint(path, "pixelflow")
    release, source = resolve_config(
        path, state_dict, presets=PRESETS, build=lambda preset: PixelFlowModel(preset.model),
        from_sidecar=release_from_settings, sidecar_names=SIDECAR_NAMES,
    )
    state_dict = cast_floating(state_dict, dtype)
    with torch.device("meta"):
        model = PixelFlowModel(release.model, operations=operations, dtype=dtype, compute_dtype=compute_dtype)
    load_strict(model, state_dict, source=str(path))
    return model.eval(), release, source

