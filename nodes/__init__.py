"""ComfyUI glue: node classes (classic API), socket types and the runtime bridge.

Each family module exports ``NODE_CLASS_MAPPINGS`` and ``NODE_DISPLAY_NAME_MAPPINGS``; they are merged here.
Node ids and input names are a public API (saved workflows store widget values by position): only append
optional inputs, and guard every change with ``tests/node_schema_snapshot.json``.
"""

from . import arpg, imagenet, mar, masks, pixelflow, rewards, search

_MODULES = (imagenet, pixelflow, mar, arpg, rewards, search, masks)

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
for _module in _MODULES:
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)
