"""Model wrapping and loading: ``ModelPatcher`` + ``load_models_gpu`` inside ComfyUI, a plain holder otherwise.

Both expose ``.model``, ``.load_device`` and ``.offload_device``, so node code is the same either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from . import host
from .devices import compute_device, offload_device


@dataclass
class StandaloneModel:
    """What a ``ModelPatcher`` offers the pack, without ComfyUI: the module and where it runs and rests."""

    model: nn.Module
    load_device: torch.device
    offload_device: torch.device

    def model_size(self) -> int:
        """Bytes of parameters and buffers."""
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)


class ManagedModule(nn.Module):
    """A plain container for a module whose class makes ``device`` a read-only property (transformers models):
    ComfyUI's ``ModelPatcher`` assigns ``model.device`` when it moves weights, so it must manage the container."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner


def wrap_module(
    module: nn.Module, *, load_device: torch.device | None = None, rest_device: torch.device | None = None
) -> object:
    """Wrap ``module`` so ComfyUI's memory manager can load, offload and partially load it with the others."""
    module.eval()
    if isinstance(getattr(type(module), "device", None), property):
        module = ManagedModule(module)
    load_device = load_device or compute_device()
    rest_device = rest_device or offload_device()
    if host.AVAILABLE:
        return host.model_patcher.ModelPatcher(module, load_device=load_device, offload_device=rest_device)
    return StandaloneModel(module.to(rest_device), load_device, rest_device)


def load_models(models: Sequence[object]) -> None:
    """Bring models used together in one loop onto their compute device (evicting others inside ComfyUI)."""
    if host.AVAILABLE:
        host.model_management.load_models_gpu(list(models))
        return
    for wrapped in models:
        wrapped.model.to(wrapped.load_device)
