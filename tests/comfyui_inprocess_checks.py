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
    check_pixelflow_nodes(pack)
    check_flan_t5_with_comfy_tokenizer(pack)
    print("all in-process checks passed")


def check_pixelflow_nodes(pack) -> None:
    """A tiny PixelFlow checkpoint in the release layout through the loader and sampler nodes inside ComfyUI."""
    pixelflow = sys.modules["flowar_in_comfy.models.pixelflow"]
    params = {"num_attention_heads": 2, "attention_head_dim": 8, "depth": 1, "patch_size": 2, "num_classes": 10}
    torch.manual_seed(0)
    model = pixelflow.PixelFlowModel(pixelflow.PixelFlowConfig(**params))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    with tempfile.TemporaryDirectory() as tmp:
        release = Path(tmp) / "tiny_release"
        release.mkdir()
        torch.save(model.state_dict(), release / "model.pt")
        (release / "config.yaml").write_text(
            "model:\n  params: {" + ", ".join(f"{k}: {v}" for k, v in params.items()) + "}\n"
            "scheduler:\n  num_train_timesteps: 1000\n  num_stages: 4\n")
        folder_paths.add_model_folder_path("pixelflow", tmp)
        folder_paths.filename_list_cache.clear()
        loader = pack.NODE_CLASS_MAPPINGS["FlowARPixelFlowLoader"]
        names = loader.INPUT_TYPES()["required"]["ckpt_name"][0]
        check("PixelFlow checkpoint listed", "tiny_release/model.pt" in names, names)
        handle = loader().load("tiny_release/model.pt", "fp16")[0]
        check("PixelFlow wrapped in ModelPatcher", isinstance(handle.patcher, comfy.model_patcher.ModelPatcher))
        block = handle.patcher.model.transformer_blocks[0].attn1.q_proj
        check("fp16 weights with ComfyUI casting ops", block.weight.dtype == torch.float16
              and isinstance(block, (comfy.ops.manual_cast.Linear, comfy.ops.disable_weight_init.Linear)), block)
        sampler = pack.NODE_CLASS_MAPPINGS["FlowARPixelFlowSampler"]()
        settings = {"seed": 5, "steps": 2, "cfg": 3.0, "cfg_schedule": "official", "shift": 1.0, "solver": "euler",
                    "size": 16, "batch_size": 2, "class_index": 3}
        image = sampler.sample(handle, **settings)[0]
        check("PixelFlow sampler gives an IMAGE", image.shape == (2, 16, 16, 3) and 0 <= image.min() <= image.max() <= 1)
        check("loaded through model_management",
              any(m.model is handle.patcher for m in mm.current_loaded_models))
        check("same seed, same image", torch.equal(image, sampler.sample(handle, **settings)[0]))
        mm.interrupt_current_processing(True)
        try:
            sampler.sample(handle, **settings)
            check("PixelFlow sampler honours interrupts", False)
        except mm.InterruptProcessingException:
            check("PixelFlow sampler honours interrupts", True)
        finally:
            mm.interrupt_current_processing(False)


def check_flan_t5_with_comfy_tokenizer(pack) -> None:
    """A single encoder file (Flan-T5 vocabulary, tiny width) uses the T5 tokenizer ComfyUI ships."""
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=32128, d_model=32, d_kv=8, num_heads=4, num_layers=1, d_ff=64,
                      feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    torch.manual_seed(0)
    encoder = T5EncoderModel(config)
    with tempfile.TemporaryDirectory() as tmp:
        weights = {name: value.clone() for name, value in encoder.state_dict().items() if name != "shared.weight"}
        save_file(weights, str(Path(tmp) / "tiny_flan_encoder.safetensors"))
        folder_paths.add_model_folder_path("text_encoders", tmp)
        folder_paths.filename_list_cache.clear()
        loader = pack.NODE_CLASS_MAPPINGS["FlowARFlanT5Loader"]
        check("T5 file listed", "tiny_flan_encoder.safetensors" in loader.INPUT_TYPES()["required"]["t5_name"][0])
        handle = loader().load("tiny_flan_encoder.safetensors", "fp32")[0]
        check("T5 wrapped in ModelPatcher", isinstance(handle.patcher, comfy.model_patcher.ModelPatcher))
        encode = pack.NODE_CLASS_MAPPINGS["FlowARPixelFlowTextEncode"]()
        condition = encode.encode(handle, "a photo of a cat", "", 512)[0]
        check("ComfyUI's T5 tokenizer used: 512 tokens, mask on the real ones",
              condition.context.shape == (1, 512, 32) and condition.mask.sum().item() == 8  # ▁ a ▁photo ▁of ▁ a ▁cat </s>
              and condition.negative_mask.sum().item() == 1, (condition.context.shape, condition.mask.sum()))


if __name__ == "__main__":
    main()
