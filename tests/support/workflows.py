"""Validation of UI-format workflows against node definitions (ours, and core ComfyUI 0.8.0's).

Conversion to the API format uses the shared converter (``../shared/tools/comfyui/ui_to_api.py``), a re-creation
of the frontend's ``graphToPrompt``; on top of it every link is type-checked and every widget value is checked
against its input's definition (type, range, choices), as ComfyUI's ``/prompt`` validation would.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

from .fixtures import REPO_ROOT
from .schema import pack_object_info, socket_type

from flowar.models.checkpoint import CHECKPOINT_SUFFIXES

COMFY_TOOLS = REPO_ROOT.parent / "shared" / "tools" / "comfyui"
CORE_OBJECT_INFO = COMFY_TOOLS / "object_info_core_0.8.0.json"
WORKFLOW_DIR = REPO_ROOT / "workflows"
MANIFEST = REPO_ROOT / "tests" / "workflow_manifest.json"  # file name -> "runnable" | "validate-only"
# Where the README tells users to put the official files; validate-only workflows name these.
OFFICIAL_LAYOUT = (
    "pixelflow/PixelFlow-Class2Image/model.pt",
    "pixelflow/PixelFlow-Text2Image/model.pt",
    "text_encoders/flan-t5-xl/config.json",
    "arpg/arpg_300m.pt",
    "vq/vq_ds16_c2i.pt",
    "mar/mar_base/checkpoint-last.pth",
    "rewards/clip-flant5-xxl/config.json",
    "rewards/grounding-dino-base/config.json",
    "rewards/sam-vit-base/config.json",
    "rewards/clip-vit-large-patch14/config.json",
    "rewards/sac+logos+ava1-l14-linearMSE.pth",
    "vq/kl16.ckpt",
)


@lru_cache(maxsize=1)
def converter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("flowar_test_ui_to_api", COMFY_TOOLS / "ui_to_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=1)
def core_definitions() -> dict[str, dict[str, Any]]:
    return json.loads(CORE_OBJECT_INFO.read_text())


def node_definitions() -> dict[str, dict[str, Any]]:
    """Core ComfyUI 0.8.0 definitions plus the pack's, listed now (file dropdowns show the current model folders)."""
    return {**core_definitions(), **pack_object_info()}


def _value_problem(name: str, spec: tuple, value: Any) -> str | None:
    kind = socket_type(spec)
    options = spec[1] if len(spec) > 1 else {}
    if kind == "COMBO":
        choices = spec[0] if isinstance(spec[0], (list, tuple)) else options.get("options", [])
        if not choices:  # a file list of the install the core definitions were saved from, which had no models
            return None if isinstance(value, str) else f"{name}={value!r} is not a file name"
        return None if value in choices else f"{name}={value!r} is not one of its choices"
    checks = {"INT": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "FLOAT": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
              "BOOLEAN": lambda v: isinstance(v, bool), "STRING": lambda v: isinstance(v, str)}
    if kind not in checks:
        return f"{name} needs a {kind} link, got the value {value!r}"
    if not checks[kind](value):
        return f"{name}={value!r} is not a {kind}"
    if kind in ("INT", "FLOAT"):
        if "min" in options and value < options["min"]:
            return f"{name}={value} is below its minimum {options['min']}"
        if "max" in options and value > options["max"]:
            return f"{name}={value} is above its maximum {options['max']}"
    return None


def _names_a_user_file(name: str, spec: tuple, value: object) -> bool:
    """A core loader's file dropdown (``*_name``) holding a model file name."""
    return (socket_type(spec) == "COMBO" and name.endswith("_name") and isinstance(value, str)
            and value.lower().endswith(CHECKPOINT_SUFFIXES))


def validate_workflow(workflow: dict, definitions: dict[str, dict[str, Any]] | None = None) -> list[str]:
    """Every problem that would stop the workflow from loading or queueing; empty when it is valid."""
    definitions = definitions if definitions is not None else node_definitions()
    ui_to_api = converter()
    warnings: list[str] = []
    try:
        prompt = ui_to_api.ui_to_api(workflow, definitions, warnings)
    except ValueError as err:  # UnsupportedWorkflow is a ValueError
        return [str(err)]
    problems = list(warnings)
    for node_id, node in prompt.items():
        info = definitions[node["class_type"]]
        where = f"node {node_id} ({node['class_type']})"
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                if name not in node["inputs"]:
                    if section == "required":
                        problems.append(f"{where}: required input {name!r} is missing")
                    continue
                value = node["inputs"][name]
                if isinstance(value, list):  # a link [source id, output slot]
                    source = definitions[prompt[value[0]]["class_type"]]
                    produced = source["output"][value[1]]
                    wanted = socket_type(spec)
                    if "*" not in (produced, wanted) and produced != wanted:
                        problems.append(f"{where}: input {name!r} wants {wanted} but is linked to a {produced}")
                    continue
                if isinstance(value, dict) and "__value__" in value:
                    value = value["__value__"]
                if node["class_type"] in core_definitions() and _names_a_user_file(name, spec, value):
                    continue  # core loaders list the files of the install they were saved from (none)
                problem = _value_problem(name, spec, value)
                if problem:
                    problems.append(f"{where}: {problem}")
    return problems


def workflow_files() -> list[Path]:
    return sorted(WORKFLOW_DIR.glob("*.json"))


def manifest() -> dict[str, str]:
    return json.loads(MANIFEST.read_text())


OUTPUT_NODES = ("SaveImage", "PreviewImage")  # core nodes a runnable workflow may end in: their images are returned


def run_workflow(workflow: dict) -> dict[str, list]:
    """Execute a UI-format workflow in this process, without ComfyUI: the pack's nodes run for real, in dependency
    order, with their outputs linked as the server would link them; core image-saving nodes return the images they
    were given instead of writing files. Returns ``{node id: [IMAGE, ...]}`` for those output nodes.

    Any other core node makes the workflow need a real ComfyUI (the real-ComfyUI tier runs those)."""
    from flowar import NODE_CLASS_MAPPINGS

    prompt = converter().ui_to_api(workflow, node_definitions())
    done: dict[str, tuple] = {}
    saved: dict[str, list] = {}

    def value(raw: Any) -> Any:
        if isinstance(raw, list):  # a link [source id, output slot]
            return evaluate(str(raw[0]))[raw[1]]
        return raw["__value__"] if isinstance(raw, dict) and "__value__" in raw else raw

    def evaluate(node_id: str) -> tuple:
        if node_id not in done:
            node = prompt[node_id]
            kind, inputs = node["class_type"], {name: value(raw) for name, raw in node["inputs"].items()}
            if kind in OUTPUT_NODES:
                saved.setdefault(node_id, []).append(inputs["images"])
                done[node_id] = ()
            elif kind in NODE_CLASS_MAPPINGS:
                cls = NODE_CLASS_MAPPINGS[kind]
                done[node_id] = tuple(getattr(cls(), cls.FUNCTION)(**inputs))
            else:
                raise NotImplementedError(f"node {node_id} ({kind}) is a core node this runner cannot execute")
        return done[node_id]

    for node_id in prompt:
        evaluate(node_id)
    return saved
