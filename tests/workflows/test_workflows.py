"""Shipped workflows (``workflows/``, UI format) validate against the node definitions; the validator itself works."""

from __future__ import annotations

import copy
import json

import pytest
from support.workflows import OFFICIAL_LAYOUT, manifest, run_workflow, validate_workflow, workflow_files

MODES = {"runnable", "validate-only"}


def test_manifest_lists_every_workflow_with_a_mode() -> None:
    listed = manifest()
    assert set(listed) == {path.name for path in workflow_files()}
    assert set(listed.values()) <= MODES


@pytest.fixture
def official_files(models_dir):
    """Empty stand-ins for the official files at the places the README names (what dropdowns would list)."""
    for name in OFFICIAL_LAYOUT:
        (models_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (models_dir / name).write_bytes(b"")
    return models_dir


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_shipped_workflow_is_valid(path, official_files) -> None:
    assert validate_workflow(json.loads(path.read_text())) == []


RUNNABLE = [path for path in workflow_files() if manifest().get(path.name) == "runnable"]


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.name)
def test_runnable_workflow_runs_end_to_end(path) -> None:
    """Runnable workflows use only the pack's built-in models: run them here and check what they save."""
    saved = run_workflow(json.loads(path.read_text()))
    assert saved, "the workflow saves no image"
    for images in saved.values():
        for image in images:
            assert image.ndim == 4 and image.shape[-1] == 3 and image.shape[0] >= 1
            assert image.isfinite().all() and image.min() >= 0 and image.max() <= 1
            assert image.std() > 0.01, "a blank image"


def test_runner_executes_links_and_refuses_core_nodes_it_cannot_run() -> None:
    class_then_empty = copy.deepcopy(GOOD)
    with pytest.raises(NotImplementedError, match="EmptyImage"):
        run_workflow(class_then_empty)


def node(node_id, node_type, inputs=(), outputs=(), widgets=None, mode=0):
    return {"id": node_id, "type": node_type, "mode": mode, "inputs": list(inputs), "outputs": list(outputs),
            "widgets_values": widgets if widgets is not None else []}


GOOD = {
    "nodes": [
        node(1, "FlowARImageNetClass", outputs=[{"name": "class_index", "type": "INT", "links": [1]}],
             widgets=["207: golden retriever"]),
        node(2, "EmptyImage", inputs=[{"name": "width", "type": "INT", "widget": {"name": "width"}, "link": 1}],
             outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [2]}], widgets=[512, 64, 1, 0]),
        node(3, "PreviewImage", inputs=[{"name": "images", "type": "IMAGE", "link": 2}]),
    ],
    "links": [[1, 1, 0, 2, 0, "INT"], [2, 2, 0, 3, 0, "IMAGE"]],
    "version": 0.4,
}


def test_validator_accepts_a_good_workflow() -> None:
    assert validate_workflow(GOOD) == []


def broken(mutate) -> dict:
    workflow = copy.deepcopy(GOOD)
    mutate(workflow)
    return workflow


@pytest.mark.parametrize(
    "mutate,expected",
    [
        (lambda w: w["nodes"][0].update(type="FlowARNoSuchNode"), "unknown node type"),
        (lambda w: w["nodes"][0]["widgets_values"].__setitem__(0, "no such class"), "is not one of its choices"),
        (lambda w: w["nodes"][1]["widgets_values"].__setitem__(1, 999999), "above its maximum"),
        (lambda w: w["nodes"][1]["widgets_values"].__setitem__(2, "three"), "is not a INT"),
        (lambda w: w["nodes"][1]["widgets_values"].append(7), "widgets_values"),
        (lambda w: w["nodes"][2]["inputs"].__setitem__(0, {"name": "images", "type": "IMAGE", "link": None}),
         "required input 'images' is missing"),
        (lambda w: w["links"].__setitem__(1, [2, 1, 0, 3, 0, "IMAGE"]), "wants IMAGE but is linked to a INT"),
        (lambda w: w.update(definitions={"subgraphs": [{"id": "x"}]}), "subgraphs"),
    ],
)
def test_validator_rejects_broken_workflows(mutate, expected: str) -> None:
    problems = validate_workflow(broken(mutate))
    assert any(expected in problem for problem in problems), problems
