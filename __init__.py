"""ComfyUI-FlowAR: PixelFlow, flow search, ARPG and MAR as ComfyUI nodes.

Importing the pack registers its model folders with ComfyUI (when ComfyUI is running) and nothing else.
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from .nodes.runtime import register_model_folders

WEB_DIRECTORY = "./web"

register_model_folders()

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
