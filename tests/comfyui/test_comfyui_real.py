"""Real-ComfyUI tier: the pack inside a ComfyUI 0.8.0 server and inside ComfyUI's own Python.

Skipped unless ``COMFYUI_DIR`` and ``COMFYUI_PYTHON`` point at a ComfyUI set up with
``../shared/tools/comfyui/setup_comfyui_cpu.sh`` (CI machines have none; run this tier by hand, see README).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.fixtures import REPO_ROOT
from support.workflows import COMFY_TOOLS, WORKFLOW_DIR, manifest

from flowar import NODE_CLASS_MAPPINGS

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON")
pytestmark = [
    pytest.mark.comfyui,
    pytest.mark.skipif(
        not (COMFYUI_DIR and COMFYUI_PYTHON and Path(COMFYUI_DIR, "main.py").is_file()),
        reason="no real ComfyUI: set COMFYUI_DIR and COMFYUI_PYTHON (see README, Real-ComfyUI tier)",
    ),
]
PACK_NAME = "ComfyUI-FlowAR"


def test_pack_loads_in_a_real_server_and_runs_its_workflows(tmp_path: Path) -> None:
    pack_link = tmp_path / PACK_NAME  # the folder name users clone into, whatever this checkout is called
    pack_link.symlink_to(REPO_ROOT, target_is_directory=True)
    runnable = [str(WORKFLOW_DIR / name) for name, mode in manifest().items() if mode == "runnable"]
    report_file = tmp_path / "report.json"
    command = [sys.executable, str(COMFY_TOOLS / "harness.py"), str(pack_link), *runnable,
               "--comfy", COMFYUI_DIR, "--python", COMFYUI_PYTHON,
               "--expect-nodes", ",".join(NODE_CLASS_MAPPINGS), "--report", str(report_file)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    report = json.loads(report_file.read_text())
    assert report["import_errors"] == [], report["import_errors"]
    assert set(report["nodes"]) == set(NODE_CLASS_MAPPINGS)
    assert result.returncode == 0, result.stdout[-4000:]


def test_runtime_bridge_inside_comfyui() -> None:
    script = Path(__file__).with_name("comfyui_inprocess_checks.py")
    result = subprocess.run([COMFYUI_PYTHON, str(script)], capture_output=True, text=True, timeout=600,
                            cwd=COMFYUI_DIR, env={**os.environ, "COMFYUI_DIR": COMFYUI_DIR})
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    assert "all in-process checks passed" in result.stdout
