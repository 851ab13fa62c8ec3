"""The repository root is the package ``flowar`` outside ComfyUI: the editable install maps it, lists every
sub-package for a wheel, and our ``kernels/`` folder can never shadow the PyPI ``kernels`` that transformers imports."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import flowar
from support.fixtures import REPO_ROOT

OUTSIDE_THE_PACKAGE = {"tests", "bench", "builtin", "workflows", "web"}


def test_flowar_is_this_checkout() -> None:
    assert flowar.__file__ == str(REPO_ROOT / "__init__.py")


def test_pyproject_lists_every_sub_package() -> None:
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11")
    listed = set(tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {path.parent.relative_to(REPO_ROOT) for path in REPO_ROOT.rglob("*.py")}
    expected = {".".join(["flowar", *folder.parts]) for folder in folders
                if not folder.parts or folder.parts[0] not in OUTSIDE_THE_PACKAGE}
    assert listed == expected


def test_our_kernels_folder_never_shadows_the_kernels_distribution() -> None:
    """``python -m pytest`` and ``python demo.py`` put the repository root first on ``sys.path``; ``kernels/`` has no
    ``__init__.py``, so a regular ``kernels`` package anywhere on the path wins over it, and without one it is a
    namespace package without ``__file__``, which transformers' availability check treats as absent."""
    result = subprocess.run([sys.executable, "-c", "import kernels; print(getattr(kernels, '__file__', None))"],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    found = result.stdout.strip()
    assert not (REPO_ROOT / "kernels" / "__init__.py").exists()
    try:
        importlib.metadata.version("kernels")
    except importlib.metadata.PackageNotFoundError:
        assert found == "None"
    else:
        assert found != "None" and not found.startswith(str(REPO_ROOT))
