"""Model definitions whose parameter names and shapes equal the official checkpoints, and their loading.

Model classes build their layers through an ``operations`` namespace (``Linear``, ``Conv2d``, ``LayerNorm``,
``GroupNorm``, ``Embedding``, ``RMSNorm``…) that defaults to :mod:`torch.nn`; ComfyUI passes
``comfy.ops.manual_cast`` so its memory manager can cast and partially load weights.
"""

from types import ModuleType, SimpleNamespace

Operations = ModuleType | SimpleNamespace  # torch.nn, comfy.ops.manual_cast, or any namespace of layer classes
