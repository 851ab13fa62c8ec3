"""ImageNet class selection by name, shared by the class-conditional families (PixelFlow, MAR, ARPG)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

CLASS_FILE = Path(__file__).parent / "data" / "imagenet_classes.json"  # index, WordNet id, English names


@lru_cache(maxsize=1)
def imagenet_class_labels() -> tuple[str, ...]:
    """Dropdown labels ``"<index>: <names>"`` in class-index order, read once on first use."""
    entries = json.loads(CLASS_FILE.read_text(encoding="utf-8"))
    entries.sort(key=lambda entry: entry["index"])
    if [entry["index"] for entry in entries] != list(range(len(entries))):
        raise ValueError(f"{CLASS_FILE} must list every class index once")
    return tuple(f"{entry['index']}: {entry['name']}" for entry in entries)


def class_index_from_label(label: str) -> int:
    """The class index of a dropdown label (its leading number), checked against the class list."""
    labels = imagenet_class_labels()
    index_text, _, _ = label.partition(":")
    if not index_text.strip().isdigit() or int(index_text) >= len(labels):
        raise ValueError(f"unknown ImageNet class {label!r}: expected a label like {labels[207]!r}")
    return int(index_text)


class FlowARImageNetClass:
    """Pick an ImageNet-1k class by name; outputs its index for any class-conditional FlowAR sampler."""

    CATEGORY = "FlowAR"
    FUNCTION = "select"
    DESCRIPTION = (
        "Choose one of the 1000 ImageNet classes by name (type to search). Outputs the class index that the "
        "class-conditional PixelFlow, MAR and ARPG samplers take."
    )
    RETURN_TYPES = ("INT",)
    RETURN_NAMES = ("class_index",)
    OUTPUT_TOOLTIPS = ("ImageNet class index 0..999, in the standard order the official checkpoints use.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        labels = list(imagenet_class_labels())
        return {
            "required": {
                "class_name": (
                    labels,
                    {"default": labels[207], "tooltip": "ImageNet class, shown as '<index>: <names>'."},
                ),
            }
        }

    def select(self, class_name: str) -> tuple[int]:
        return (class_index_from_label(class_name),)


NODE_CLASS_MAPPINGS = {"FlowARImageNetClass": FlowARImageNetClass}
NODE_DISPLAY_NAME_MAPPINGS = {"FlowARImageNetClass": "ImageNet Class (FlowAR)"}
