"""Node ids, input names, order and types are a public API: the snapshot may only grow.

Saved workflows store widget values by position, so a renamed, removed, reordered or retyped input (or a new
required one) breaks every workflow using the node. After an allowed change (a new node, an appended optional
input or output) record it with ``FLOWAR_UPDATE_SNAPSHOT=1 python -m pytest tests/nodes/test_node_schema.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from support.schema import contract, pack_object_info

SNAPSHOT = Path(__file__).parents[1] / "node_schema_snapshot.json"  # tests/, as nodes/__init__.py says


def breaking_changes(old: dict, new: dict) -> list[str]:
    """Every way ``new`` breaks workflows saved against ``old`` (empty when it only adds)."""
    problems = []
    for node_id, before in old.items():
        after = new.get(node_id)
        if after is None:
            problems.append(f"{node_id}: node removed")
            continue
        if after["required"] != before["required"]:
            problems.append(f"{node_id}: required inputs changed from {before['required']} to {after['required']}")
        if after["optional"][: len(before["optional"])] != before["optional"]:
            problems.append(f"{node_id}: optional inputs changed from {before['optional']} (append only)")
        if after["output"][: len(before["output"])] != before["output"]:
            problems.append(f"{node_id}: outputs changed from {before['output']} to {after['output']} (append only)")
    return problems


def current_contracts() -> dict:
    return {node_id: contract(info) for node_id, info in sorted(pack_object_info().items())}


def test_node_schemas_only_grow() -> None:
    snapshot = json.loads(SNAPSHOT.read_text())
    current = current_contracts()
    assert breaking_changes(snapshot, current) == []
    if os.environ.get("FLOWAR_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(current, indent=1) + "\n")
        return
    assert current == snapshot, "node schemas grew: record them with FLOWAR_UPDATE_SNAPSHOT=1 (see module docstring)"


BASE = {"N": {"required": [["a", "INT"], ["m", "MODEL"]], "optional": [["o", "FLOAT"]], "output": ["IMAGE"]}}


@pytest.mark.parametrize(
    "change,expected",
    [
        (lambda n: n.pop("N"), "node removed"),
        (lambda n: n["N"]["required"].reverse(), "required inputs changed"),
        (lambda n: n["N"]["required"].append(["b", "INT"]), "required inputs changed"),
        (lambda n: n["N"]["required"].__setitem__(0, ["a", "FLOAT"]), "required inputs changed"),
        (lambda n: n["N"]["optional"].insert(0, ["p", "INT"]), "optional inputs changed"),
        (lambda n: n["N"]["output"].insert(0, ["MASK"]), "outputs changed"),
    ],
)
def test_breaking_changes_are_detected(change, expected: str) -> None:
    new = json.loads(json.dumps(BASE))
    change(new)
    assert any(expected in problem for problem in breaking_changes(BASE, new))


def test_additions_are_allowed() -> None:
    new = json.loads(json.dumps(BASE))
    new["N"]["optional"].append(["q", "BOOLEAN"])
    new["N"]["output"].append("MASK")
    new["M"] = {"required": [], "optional": [], "output": []}
    assert breaking_changes(BASE, new) == []
