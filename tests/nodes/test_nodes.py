"""Node conventions (ids, categories, descriptions, tooltips) and the shared ImageNet class node."""

from __future__ import annotations

import pytest
from support.schema import pack_object_info

from flowar import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, WEB_DIRECTORY
from flowar.nodes.imagenet import FlowARImageNetClass, class_index_from_label, imagenet_class_labels

CATEGORIES = {"FlowAR", "FlowAR/PixelFlow", "FlowAR/MAR", "FlowAR/ARPG", "FlowAR/Search", "FlowAR/Rewards"}


def test_exports() -> None:
    assert NODE_CLASS_MAPPINGS and WEB_DIRECTORY == "./web"
    assert set(NODE_DISPLAY_NAME_MAPPINGS) == set(NODE_CLASS_MAPPINGS)


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_node_follows_conventions(node_id: str) -> None:
    cls = NODE_CLASS_MAPPINGS[node_id]
    info = pack_object_info()[node_id]
    assert node_id.startswith("FlowAR")
    assert info["category"] in CATEGORIES
    assert len(cls.DESCRIPTION) > 20
    assert callable(getattr(cls, cls.FUNCTION))
    for section in ("required", "optional"):
        for name, spec in info["input"].get(section, {}).items():
            assert len(spec) == 2 and spec[1].get("tooltip"), f"{node_id}.{name} needs a tooltip"
    assert len(info["output_tooltips"]) == len(info["output"]), f"{node_id} needs a tooltip per output"
    assert len(info["output_name"]) == len(info["output"])


def test_imagenet_labels_follow_the_official_index_order() -> None:
    labels = imagenet_class_labels()
    assert len(labels) == 1000
    assert labels[207].startswith("207: golden retriever") and labels[980].startswith("980: volcano")


def test_imagenet_node_returns_index_and_rejects_unknown_labels() -> None:
    node = FlowARImageNetClass()
    label = imagenet_class_labels()[388]
    assert node.select(label) == (388,)
    assert FlowARImageNetClass.INPUT_TYPES()["required"]["class_name"][1]["default"] == imagenet_class_labels()[207]
    for bad in ("1000: nothing", "panda", ""):
        with pytest.raises(ValueError, match="unknown ImageNet class"):
            class_index_from_label(bad)
