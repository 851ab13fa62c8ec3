"""What every family's nodes share: the seed widget and how a loader turns a file choice and a dtype choice into
the path, device, weight dtype and layer operations its model is built with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..models import Operations
from ..models.families import FAMILIES
from .runtime import folders
from .runtime.devices import choose_dtype, compute_device, layer_operations

MAX_SEED = 0xFFFFFFFFFFFFFFFF


def seed_input(tooltip: str) -> tuple[str, dict]:
    """The seed widget (with ComfyUI's fixed / increment / randomize control after it)."""
    return ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True, "tooltip": tooltip})


@dataclass(frozen=True)
class LoadPlan:
    """Where a model file is and how to build it: weights in ``dtype``, layers from ``operations``, activations in
    ``compute_dtype`` (ComfyUI's casting ops when the device computes in another dtype than the weights)."""

    path: Path
    device: torch.device
    dtype: torch.dtype
    operations: Operations
    compute_dtype: torch.dtype

    @property
    def build_options(self) -> dict:
        """The keyword arguments the pack's model loaders take."""
        return {"dtype": self.dtype, "operations": self.operations, "compute_dtype": self.compute_dtype}


def plan_load(folder: str, name: str, dtype: str, *, family: str, auto: torch.dtype | None = None) -> LoadPlan:
    """Find ``name`` in ``models/<folder>`` (clear error naming every folder and ``family``'s source) and pick the
    dtype: the user's choice, ComfyUI's for ``auto`` unless ``auto`` fixes one (e.g. fp32 for a tokenizer)."""
    path = folders.resolve(folder, name, where_to_get=FAMILIES[family].where_to_get)
    device = compute_device()
    weight_dtype = auto if dtype == "auto" and auto is not None else choose_dtype(dtype, device)
    operations, compute_dtype = layer_operations(weight_dtype, device)
    return LoadPlan(path, device, weight_dtype, operations, compute_dtype)
