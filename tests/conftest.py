"""Test set-up: the pack imported as the package ``flowar`` whatever its folder is called, plus shared fixtures.

The pack uses relative imports only (ComfyUI has a top-level module called ``nodes``), so it is loaded here from
the repository root under one alias; tests import ``flowar.<layer>``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACK_ALIAS = "flowar"


def _load_pack() -> None:
    if PACK_ALIAS in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        PACK_ALIAS, REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_ALIAS] = module
    spec.loader.exec_module(module)


_load_pack()


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
