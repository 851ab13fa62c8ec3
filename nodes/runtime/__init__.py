"""The runtime bridge: the only code (with the node classes) that knows whether ComfyUI is running.

Inside ComfyUI it uses ComfyUI's devices, ``ModelPatcher``/``load_models_gpu``, ``ProgressBar`` and
``folder_paths``; standalone it falls back to plain torch devices, a simple model holder, logged progress and
environment-configured model folders. It is product code for library use, not a test double.
"""

from . import host
from .devices import DTYPE_CHOICES, choose_dtype, compute_device, intermediate_device, layer_operations, offload_device
from .folders import (
    MODEL_FOLDERS,
    ModelFileNotFound,
    list_files,
    list_model_dirs,
    register_model_folders,
    resolve,
    search_paths,
)
from .patcher import StandaloneModel, load_models, wrap_module
from .progress import Progress, check_interrupt, preview_image

__all__ = [
    "DTYPE_CHOICES",
    "MODEL_FOLDERS",
    "ModelFileNotFound",
    "Progress",
    "StandaloneModel",
    "check_interrupt",
    "choose_dtype",
    "compute_device",
    "host",
    "intermediate_device",
    "layer_operations",
    "list_files",
    "list_model_dirs",
    "load_models",
    "offload_device",
    "preview_image",
    "register_model_folders",
    "resolve",
    "search_paths",
    "wrap_module",
]
