"""Checks of the runtime bridge inside a real ComfyUI, run by ``test_comfyui_real.py`` with ComfyUI's Python.

Usage: ``$COMFYUI_PYTHON tests/comfyui_inprocess_checks.py`` with ``COMFYUI_DIR`` set. Prints one line per check
and exits non-zero on the first failure. Not collected by pytest (it needs ``comfy`` importable).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.environ["COMFYUI_DIR"])
from comfy.cli_args import args  # noqa: E402

args.cpu = True  # before comfy.model_management is imported

import comfy.model_management as mm  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.ops  # noqa: E402
import folder_paths  # noqa: E402
import torch  # noqa: E402


def load_pack():
    spec = importlib.util.spec_from_file_location(
        "flowar_in_comfy", REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["flowar_in_comfy"] = module
    spec.loader.exec_module(module)
    return module


def check(name: str, condition: bool, detail: object = "") -> None:
    print(("ok   " if condition else "FAIL ") + name + (f": {detail}" if detail and not condition else ""))
    if not condition:
        sys.exit(1)


def main() -> None:
    pack = load_pack()
    runtime = sys.modules["flowar_in_comfy.nodes.runtime"]
    check("bridge sees ComfyUI", runtime.host.AVAILABLE)
    check("nodes registered", "FlowARImageNetClass" in pack.NODE_CLASS_MAPPINGS)

    for folder in runtime.MODEL_FOLDERS:
        paths, extensions = folder_paths.folder_names_and_paths[folder]
        check(f"folder {folder} registered with extension filter",
              os.path.join(folder_paths.models_dir, folder) in paths and ".safetensors" in extensions)

    with tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp) / "arpg"
        extra.mkdir()
        (extra / "arpg_300m.pt").write_bytes(b"")
        (extra / "notes.txt").write_text("not a model")
        folder_paths.add_model_folder_path("arpg", str(extra))
        runtime.register_model_folders()  # again: must keep the added path and the filter
        paths, extensions = folder_paths.folder_names_and_paths["arpg"]
        check("re-registration keeps extra_model_paths entries", str(extra) in paths and ".pt" in extensions)
        folder_paths.filename_list_cache.clear()
        listed = runtime.list_files("arpg")
        check("files listed through folder_paths", "arpg_300m.pt" in listed and "notes.txt" not in listed, listed)
        check("file resolved", runtime.resolve("arpg", "arpg_300m.pt", where_to_get="-") == extra / "arpg_300m.pt")
        try:
            runtime.resolve("arpg", "arpg_1b.pt", where_to_get="hp-l33/ARPG")
            check("missing file raises", False)
        except runtime.ModelFileNotFound as err:
            check("missing file names every folder searched", str(extra) in str(err) and "hp-l33/ARPG" in str(err))

    device = runtime.compute_device()
    check("compute device is ComfyUI's", device == mm.get_torch_device())
    check("auto dtype on CPU is float32", runtime.choose_dtype("auto", device) == torch.float32)
    ops, compute = runtime.layer_operations(torch.float32, device)
    check("ComfyUI layer operations", ops in (comfy.ops.manual_cast, comfy.ops.disable_weight_init), ops)

    module = torch.nn.Sequential(ops.Linear(8, 8), ops.LayerNorm(8))
    for p in module.parameters():
        torch.nn.init.normal_(p)
    wrapped = runtime.wrap_module(module)
    check("wrapped in ModelPatcher", isinstance(wrapped, comfy.model_patcher.ModelPatcher))
    runtime.load_models([wrapped])
    check("loaded through model_management", any(m.model is wrapped for m in mm.current_loaded_models))
    out = wrapped.model(torch.randn(2, 8, device=wrapped.load_device))
    check("loaded module runs", out.shape == (2, 8) and torch.isfinite(out).all())

    progress = runtime.Progress(4, node_id="7")
    progress(1, 4, torch.rand(1, 16, 16, 3))
    mm.interrupt_current_processing(True)
    try:
        progress(2, 4)
        check("interrupt honoured", False)
    except mm.InterruptProcessingException:
        check("interrupt honoured", True)
    finally:
        mm.interrupt_current_processing(False)
    print("all in-process checks passed")


if __name__ == "__main__":
    main()
