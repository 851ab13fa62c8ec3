"""The one import of ComfyUI: its modules when the pack runs inside ComfyUI, ``None`` everywhere otherwise.

Everything else in the pack asks :data:`AVAILABLE` instead of importing ``comfy`` itself, so the pack imports
cleanly without ComfyUI (tests, library use, the demo) and behaves natively inside it.
"""

from __future__ import annotations

from types import ModuleType

model_management: ModuleType | None
model_patcher: ModuleType | None
model_sampling: ModuleType | None
ops: ModuleType | None
sample: ModuleType | None
samplers: ModuleType | None
utils: ModuleType | None
folder_paths: ModuleType | None

try:
    import comfy.model_management as model_management
    import comfy.model_patcher as model_patcher
    import comfy.model_sampling as model_sampling
    import comfy.ops as ops
    import comfy.sample as sample
    import comfy.samplers as samplers
    import comfy.utils as utils
    import folder_paths
except ImportError:
    model_management = model_patcher = model_sampling = ops = sample = samplers = utils = folder_paths = None

AVAILABLE: bool = model_management is not None


def prompt_server() -> object | None:
    """ComfyUI's running ``PromptServer`` (for UI messages), or None standalone or in a process without a server."""
    if not AVAILABLE:
        return None
    try:
        from server import PromptServer
    except ImportError:
        return None
    return getattr(PromptServer, "instance", None)
