"""The layer rules, read from the imports of every Python file (with ``ast``, nothing is imported):

- layers point one way: ``nodes`` -> ``samplers`` -> ``models`` -> ``kernels``;
- ComfyUI is imported only by ``nodes/`` (its runtime bridge and node glue), so nothing below it imports ComfyUI or
  ``nodes/``;
- no run-time module (the pack's ``__init__``, ``nodes``, ``samplers``, ``models``, ``kernels``) imports the tooling
  (``tooling``, ``train``, ``bench``);
- the tooling's spine points one way too: ``train``, ``bench`` and ``demo.py`` import ``tooling``, never the reverse,
  and nothing imports ``bench/`` or ``tests/`` (tests import only their builders in ``tests/support``, never another
  test module).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from support.fixtures import REPO_ROOT

PACK = "flowar"
COMFYUI_MODULES = {"comfy", "comfy_extras", "comfy_api", "folder_paths", "server", "execution", "latent_preview",
                   "node_helpers", "nodes"}
RUNTIME = {"", "nodes", "samplers", "models", "kernels"}  # "" = the pack's own __init__.py
BELOW = {"samplers": {"nodes"}, "models": {"nodes", "samplers"}, "kernels": {"nodes", "samplers", "models"}}
TOOLING = {"tooling", "train", "bench"}


def python_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts
        if not any(part.startswith(".") or part in {"build", "node_modules"} for part in parts):
            yield path


def imported_modules(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """``(line, module)`` for every import of ``path``; relative imports resolved to ``flowar.…`` from the file's
    place in the pack (the repository root is the package ``flowar``)."""
    package = [PACK, *path.relative_to(root).parent.parts]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            names = [f"{module}.{alias.name}" for alias in node.names] if not node.module else [module]
            yield from ((node.lineno, name) for name in names)


def layer_of(path: Path, root: Path) -> str:
    """The top folder a file belongs to (``""`` for the pack's own ``__init__.py``, ``demo`` for ``demo.py``)."""
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else ("" if parts[0] == "__init__.py" else Path(parts[0]).stem)


def target_layer(module: str) -> str | None:
    """The pack folder an import reaches (``flowar.samplers.x`` -> ``samplers``), or None outside the pack."""
    parts = module.split(".")
    return (parts[1] if len(parts) > 1 else "") if parts[0] == PACK else None


def violations(root: Path) -> list[str]:
    """Every import that breaks a layer rule, as ``file:line imports module (rule)``."""
    bench_modules = {path.stem for path in (root / "bench").glob("*.py")}
    found = []
    for path in python_files(root):
        layer = layer_of(path, root)
        for line, module in imported_modules(path, root):
            top, reached = module.split(".")[0], target_layer(module)
            rules = []
            if layer != "nodes" and layer != "tests" and top in COMFYUI_MODULES:
                rules.append("only nodes/ imports ComfyUI")
            if reached in BELOW.get(layer, set()):
                rules.append(f"{layer}/ is below {reached}/")
            if layer in RUNTIME and reached in TOOLING:
                rules.append("run-time code never imports the tooling")
            if layer == "tooling" and reached in {"train", "bench"}:
                rules.append("tooling/ is the spine: train/ and bench/ import it, not the reverse")
            if reached == "bench" or top in {"bench", "tests"} or (layer != "bench" and top in bench_modules):
                rules.append("nothing imports bench/ or tests/")
            if top == "support" and layer != "tests":
                rules.append("tests/support is for the tests")
            if layer == "tests" and top.startswith("test_"):
                rules.append("a test module never imports another")
            found += [f"{path.relative_to(root)}:{line} imports {module} ({rule})" for rule in rules]
    return found


def test_the_repository_keeps_its_layer_rules() -> None:
    assert violations(REPO_ROOT) == []


def test_each_rule_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself, on a small tree that breaks every rule once."""
    files = {
        "__init__.py": "from .tooling import world\n",
        "samplers/run.py": "from ..nodes.common import x\nimport comfy.model_management\n",
        "models/net.py": "from ..samplers import run\n",
        "kernels/op.py": "from flowar.models import net\n",
        "tooling/world.py": "from ..train import loop\n",
        "train/loop.py": "from ..tooling import world\n",  # allowed
        "bench/speed.py": "import quality\n",  # a sibling benchmark script: allowed
        "bench/quality.py": "from flowar.tooling import world\n",  # allowed
        "demo.py": "import quality\nfrom tests.support import fixtures\n",
        "tests/test_a.py": "from test_b import helper\nfrom support.fixtures import REPO_ROOT\n",
        "tests/test_b.py": "helper = 1\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = violations(tmp_path)
    assert found == [
        "__init__.py:1 imports flowar.tooling (run-time code never imports the tooling)",
        "demo.py:1 imports quality (nothing imports bench/ or tests/)",
        "demo.py:2 imports tests.support (nothing imports bench/ or tests/)",
        "kernels/op.py:1 imports flowar.models (kernels/ is below models/)",
        "models/net.py:1 imports flowar.samplers (models/ is below samplers/)",
        "samplers/run.py:1 imports flowar.nodes.common (samplers/ is below nodes/)",
        "samplers/run.py:2 imports comfy.model_management (only nodes/ imports ComfyUI)",
        "tests/test_a.py:1 imports test_b (a test module never imports another)",
        "tooling/world.py:1 imports flowar.train (tooling/ is the spine: train/ and bench/ import it, not the "
        "reverse)",
    ]
