"""Model definitions whose parameter names and shapes equal the official checkpoints, and their loading.

Model classes build their layers through an ``operations`` namespace (``Linear``, ``Conv2d``, ``LayerNorm``,
``GroupNorm``, ``Embedding``, ``RMSNorm``…) that defaults to :mod:`torch.nn`; ComfyUI passes
``comfy.ops.manual_cast`` so its memory manager can cast and partially load weights.
"""

from types import ModuleType, SimpleNamespace

import torch
from torch import nn

Operations = ModuleType | SimpleNamespace  # torch.nn, comfy.ops.manual_cast, or any namespace of layer classes


class ReleasedModel(nn.Module):
    """Base of the networks that load released checkpoints.

    Subclasses take ``(config, *, operations, device, dtype, compute_dtype)``: ``operations`` builds the layers
    (``torch.nn`` or ComfyUI's casting ops); ``compute_dtype`` is the dtype activations run in when it differs from
    the weights' (ComfyUI's ``manual_cast``), else the dtype of the weight named by ``DTYPE_REFERENCE``.
    """

    DTYPE_REFERENCE: str  # a parameter whose dtype is the weights' dtype

    def __init__(self, config: object, compute_dtype: torch.dtype | None) -> None:
        super().__init__()
        self.config = config
        self.compute_dtype = compute_dtype

    @property
    def activation_dtype(self) -> torch.dtype:
        return self.compute_dtype or self.get_parameter(self.DTYPE_REFERENCE).dtype
