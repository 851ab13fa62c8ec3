"""The one import of ComfyUI: its modules when the pack runs inside ComfyUI, ``None`` everywhere otherwise.

Everything else in the pack asks :data:`AVAILABLE` instead of importing ``comfy`` itself, so the pack imports
cleanly without ComfyUI (tests, library use, the demo) and behaves natively inside it.
"""

from __future__ import annotations

from types import ModuleType

model_management: ModuleType | None
model_patcher: ModuleType | None
ops: ModuleType | None
utils: ModuleType | None
folder_paths: ModuleType | None

try:
    import comfy.model_management as model_management
    import comfy.model_patcher as model_patcher
    import comfy.ops as ops
    import comfy.utils as utils
    import folder_paths
except ImportError:
    model_management = model_patcher = ops = utils = folder_paths = None

AVAILABLE: bool = model_management is not None
