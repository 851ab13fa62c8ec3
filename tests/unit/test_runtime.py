"""The runtime bridge in standalone mode: devices, dtypes, model holder, progress, model folders."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from flowar.nodes import runtime
from flowar.nodes.runtime import folders


def test_standalone_when_comfyui_is_absent() -> None:
    assert not runtime.host.AVAILABLE
    assert runtime.compute_device().type in ("cpu", "cuda")
    assert runtime.intermediate_device() == torch.device("cpu")
    ops, compute = runtime.layer_operations(torch.float32, torch.device("cpu"))
    assert ops is torch.nn and compute == torch.float32


def test_dtype_choice() -> None:
    cpu = torch.device("cpu")
    assert runtime.choose_dtype("auto", cpu) == torch.float32
    assert runtime.choose_dtype("bf16", cpu) == torch.bfloat16
    assert runtime.choose_dtype("fp16", cpu) == torch.float16
    with pytest.raises(ValueError, match="dtype must be one of auto, fp32, fp16, bf16"):
        runtime.choose_dtype("fp8", cpu)


def test_wrapped_module_loads_to_its_device_and_reports_size() -> None:
    module = nn.Linear(4, 3)
    wrapped = runtime.wrap_module(module, load_device=torch.device("cpu"), rest_device=torch.device("cpu"))
    runtime.load_models([wrapped])
    assert wrapped.model is module and not module.training
    assert wrapped.model_size() == (4 * 3 + 3) * 4


def test_progress_logs_each_tenth_and_ignores_previews(caplog: pytest.LogCaptureFixture) -> None:
    progress = runtime.Progress(20, label="test loop")
    with caplog.at_level(logging.INFO, logger="FlowAR"):
        for step in range(1, 21):
            progress(step, 20, torch.rand(1, 8, 8, 3))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "test loop: 1/20" and messages[-1] == "test loop: 20/20"
    assert len(messages) == 11


def test_preview_image_converts_first_image() -> None:
    image = torch.zeros(2, 5, 7, 3)
    image[0, ..., 0] = 1.0
    pil = runtime.preview_image(image)
    assert pil.size == (7, 5) and pil.getpixel((0, 0)) == (255, 0, 0)


# ---- model folders --------------------------------------------------------------------------------------------
def test_lists_model_files_with_extension_filter(models_dir: Path) -> None:
    (models_dir / "arpg" / "arpg_300m.pt").write_bytes(b"")
    (models_dir / "arpg" / "sub").mkdir()
    (models_dir / "arpg" / "sub" / "b.safetensors").write_bytes(b"")
    (models_dir / "arpg" / "readme.txt").write_text("not a model")
    listed = runtime.list_files("arpg")
    assert listed[:2] == ["arpg_300m.pt", "sub/b.safetensors"]  # the user's files, then the pack's built-ins
    assert all(name.startswith("builtin/") for name in listed[2:])


def test_lists_hugging_face_folders(models_dir: Path) -> None:
    (models_dir / "rewards" / "clip-flant5-xl").mkdir()
    (models_dir / "rewards" / "clip-flant5-xl" / "config.json").write_text("{}")
    (models_dir / "rewards" / "empty").mkdir()
    assert runtime.list_model_dirs("rewards") == ["clip-flant5-xl"]


def test_builtin_entries_listed_and_resolved(models_dir: Path, tmp_path: Path, monkeypatch) -> None:
    builtin = tmp_path / "pack_builtin"
    (builtin / "mar").mkdir(parents=True)
    (builtin / "mar" / "tiny.safetensors").write_bytes(b"")
    monkeypatch.setattr(folders, "BUILTIN_ROOT", builtin)
    (models_dir / "mar" / "checkpoint-last.pth").write_bytes(b"")
    assert runtime.list_files("mar") == ["checkpoint-last.pth", "builtin/tiny.safetensors"]
    assert runtime.resolve("mar", "builtin/tiny.safetensors", where_to_get="-") == builtin / "mar" / "tiny.safetensors"
    assert runtime.resolve("mar", "checkpoint-last.pth", where_to_get="-") == models_dir / "mar" / "checkpoint-last.pth"


def test_missing_file_lists_every_folder_searched(models_dir: Path, tmp_path: Path, monkeypatch) -> None:
    second = tmp_path / "second_root"
    monkeypatch.setenv("FLOWAR_MODELS_DIR", f"{models_dir}:{second}")
    with pytest.raises(runtime.ModelFileNotFound) as err:
        runtime.resolve("pixelflow", "model.pt", where_to_get="Hugging Face ShoufaChen/PixelFlow-Class2Image")
    message = str(err.value)
    assert "\n" not in message
    assert "'model.pt' not found in models/pixelflow" in message
    assert str(models_dir / "pixelflow") in message and str(second / "pixelflow") in message
    assert "ShoufaChen/PixelFlow-Class2Image" in message


def test_registration_is_a_no_op_without_comfyui() -> None:
    runtime.register_model_folders()  # must not raise, import ComfyUI modules or create a registry
    assert "folder_paths" not in sys.modules and "comfy" not in sys.modules


def test_modules_with_a_read_only_device_property_are_wrapped_in_a_container() -> None:
    """ComfyUI's ModelPatcher assigns ``model.device``; transformers models make it a read-only property."""
    from flowar.nodes.runtime.patcher import ManagedModule, wrap_module

    class WithDeviceProperty(torch.nn.Linear):
        @property
        def device(self) -> torch.device:
            return self.weight.device

    inner = WithDeviceProperty(2, 2)
    wrapped = wrap_module(inner)
    assert isinstance(wrapped.model, ManagedModule) and wrapped.model.inner is inner
    wrapped.model.device = torch.device("cpu")  # what ModelPatcher does: must not raise
    plain = torch.nn.Linear(2, 2)
    assert wrap_module(plain).model is plain
