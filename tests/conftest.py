"""Test set-up: the pack imported as the package ``flowar`` whatever its folder is called, plus shared fixtures.

The pack uses relative imports only (ComfyUI has a top-level module called ``nodes``), so it is loaded here from
the repository root under one alias; tests import ``flowar.<layer>``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "bench"))
from common import load_pack  # noqa: E402  (bench/common.py: the one place that imports the pack)

load_pack("flowar")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "comfyui: needs a real ComfyUI (COMFYUI_DIR and COMFYUI_PYTHON)")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty standalone model root (``FLOWAR_MODELS_DIR``) with the pack's folders created."""
    from flowar.nodes.runtime import MODEL_FOLDERS

    for folder in (*MODEL_FOLDERS, "text_encoders"):
        (tmp_path / folder).mkdir()
    monkeypatch.setenv("FLOWAR_MODELS_DIR", str(tmp_path))
    return tmp_path
