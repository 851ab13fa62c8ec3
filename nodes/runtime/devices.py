"""Device, dtype and layer-operation choices: ComfyUI's when it is running, plain torch otherwise."""

from __future__ import annotations

import torch

from ...models import Operations
from . import host

DTYPE_CHOICES = ("auto", "fp32", "fp16", "bf16")
_NAMED_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def compute_device() -> torch.device:
    """Where models run: ComfyUI's torch device, else CUDA when present, else CPU."""
    if host.AVAILABLE:
        return host.model_management.get_torch_device()
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def offload_device() -> torch.device:
    """Where idle weights rest."""
    return host.model_management.unet_offload_device() if host.AVAILABLE else torch.device("cpu")


def intermediate_device() -> torch.device:
    """Where tensors passed between nodes live (IMAGE, MASK, our latents)."""
    return host.model_management.intermediate_device() if host.AVAILABLE else torch.device("cpu")


def choose_dtype(
    choice: str,
    device: torch.device,
    *,
    supported: tuple[torch.dtype, ...] = (torch.bfloat16, torch.float16, torch.float32),
) -> torch.dtype:
    """The weight dtype for a user's ``choice`` among :data:`DTYPE_CHOICES` on ``device``.

    ``auto`` defers to ComfyUI's ``unet_dtype`` (which honours ``--fp32-unet`` and friends); standalone it is
    float32 on CPU and bfloat16 (else float16) on a GPU that supports it.
    """
    if choice in _NAMED_DTYPES:
        return _NAMED_DTYPES[choice]
    if choice != "auto":
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_CHOICES)}, got {choice!r}")
    if host.AVAILABLE:
        return host.model_management.unet_dtype(device=device, supported_dtypes=list(supported))
    if device.type == "cuda":
        if torch.bfloat16 in supported and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if torch.float16 in supported:
            return torch.float16
    return torch.float32


def layer_operations(weight_dtype: torch.dtype, device: torch.device) -> tuple[Operations, torch.dtype]:
    """The ``operations`` namespace to build a model with, and the dtype to compute in.

    Inside ComfyUI: ``comfy.ops.manual_cast`` when weights must be cast to another compute dtype on ``device``,
    else ``comfy.ops.disable_weight_init``; both let the memory manager cast and partially load weights.
    Standalone: :mod:`torch.nn`, computing in the weight dtype.
    """
    if not host.AVAILABLE:
        return torch.nn, weight_dtype
    compute_dtype = host.model_management.unet_manual_cast(weight_dtype, device)
    if compute_dtype is None:
        return host.ops.disable_weight_init, weight_dtype
    return host.ops.manual_cast, compute_dtype
