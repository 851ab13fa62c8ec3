"""Test set-up: markers and shared fixtures. The pack is the installed package ``flowar`` (``pip install -e .``, see
README), so tests import ``flowar.<layer>`` like any user of the library."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "comfyui: needs a real ComfyUI (COMFYUI_DIR and COMFYUI_PYTHON)")
    config.addinivalue_line("markers", "gpu: needs a CUDA device")
    config.addinivalue_line("markers", "slow: takes seconds to minutes (training, the demo, benchmark runs, end-to-end "
                                       "sampling); the quick tier is -m 'not slow'")


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty standalone model root (``FLOWAR_MODELS_DIR``) with the pack's folders created."""
    from flowar.nodes.runtime import MODEL_FOLDERS

    for folder in (*MODEL_FOLDERS, "text_encoders"):
        (tmp_path / folder).mkdir()
    monkeypatch.setenv("FLOWAR_MODELS_DIR", str(tmp_path))
    return tmp_path
