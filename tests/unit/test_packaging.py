"""Packaging: clean import without ComfyUI, requirements, registry metadata, and CI running the README's command."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from support.fixtures import REPO_ROOT


def test_pack_imports_without_comfyui_and_without_side_effects(tmp_path) -> None:
    script = (
        "import importlib.util, sys, os\n"
        f"spec = importlib.util.spec_from_file_location('anyname', {str(REPO_ROOT / '__init__.py')!r},"
        f" submodule_search_locations=[{str(REPO_ROOT)!r}])\n"
        "module = importlib.util.module_from_spec(spec); sys.modules['anyname'] = module\n"
        "before = set(os.listdir('.'))\n"
        "spec.loader.exec_module(module)\n"
        "assert 'comfy' not in sys.modules and 'folder_paths' not in sys.modules\n"
        "assert 'nodes' not in sys.modules, 'the pack must not shadow ComfyUI\\'s top-level nodes module'\n"
        "assert 'anyname.train' not in sys.modules, 'training code must stay out of the run-time imports'\n"
        "assert 'anyname.tooling' not in sys.modules, 'the tooling must stay out of the run-time imports'\n"
        "assert set(os.listdir('.')) == before\n"
        "print(len(module.NODE_CLASS_MAPPINGS), module.WEB_DIRECTORY)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    count, web = result.stdout.split()
    assert int(count) > 0 and web == "./web"


def test_requirements_never_list_torch() -> None:
    names = [re.split(r"[<>=!~\[ ]", line.strip())[0].lower()
             for line in (REPO_ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert names and not {"torch", "torchvision", "torchaudio"} & set(names)
    assert {"safetensors", "transformers", "einops", "numpy", "pillow"} <= set(names)


def test_pyproject_metadata_for_the_registry() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert project["project"]["requires-python"] == ">=3.10"
    assert "web" not in project["tool"]["comfy"]  # WEB_DIRECTORY is exported; both would serve scripts twice
    assert not any(dep.lower().startswith("torch") for dep in project["project"]["dependencies"])


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    command = re.search(r"<!-- test-command -->\s*```(?:bash|sh)?\n(.+?)\n```", readme, re.S).group(1).strip()
    ci_lines = [line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines
