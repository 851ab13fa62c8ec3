"""Node definitions in ComfyUI's ``/object_info`` shape, built from the classic node attributes."""

from __future__ import annotations

from typing import Any


def object_info(node_id: str, cls: type, display_name: str) -> dict[str, Any]:
    """What ComfyUI 0.8.0's ``node_info`` reports for a classic node class (the fields the tests use)."""
    inputs = cls.INPUT_TYPES()
    outputs = list(cls.RETURN_TYPES)
    return {
        "name": node_id,
        "display_name": display_name,
        "category": cls.CATEGORY,
        "description": getattr(cls, "DESCRIPTION", ""),
        "input": inputs,
        "input_order": {section: list(specs) for section, specs in inputs.items()},
        "output": outputs,
        "output_name": list(getattr(cls, "RETURN_NAMES", outputs)),
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(outputs))),
        "output_tooltips": list(getattr(cls, "OUTPUT_TOOLTIPS", [])),
        "output_node": getattr(cls, "OUTPUT_NODE", False),
    }


def socket_type(spec: tuple) -> str:
    """An input's socket type, ``COMBO`` for a list of choices."""
    return "COMBO" if isinstance(spec[0], (list, tuple)) else spec[0]


def contract(info: dict[str, Any]) -> dict[str, Any]:
    """The part of a node definition saved workflows depend on: id, inputs in order with types, outputs."""
    sections = {
        section: [[name, socket_type(info["input"][section][name])] for name in names]
        for section, names in info["input_order"].items()
        if section in ("required", "optional")
    }
    return {"required": sections.get("required", []), "optional": sections.get("optional", []),
            "output": info["output"]}


def pack_object_info() -> dict[str, dict[str, Any]]:
    """``object_info`` of every node the pack registers."""
    from flowar import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

    return {
        node_id: object_info(node_id, cls, NODE_DISPLAY_NAME_MAPPINGS.get(node_id, node_id))
        for node_id, cls in NODE_CLASS_MAPPINGS.items()
    }
