"""Shared by the benchmark scripts: import the pack as ``flowar`` from this checkout, whatever its folder name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACK_ROOT = Path(__file__).resolve().parents[1]


def load_pack(alias: str = "flowar") -> ModuleType:
    """The pack's root package (relative imports only inside it, so it loads under any name).

    The repository root is taken off ``sys.path`` first: ``python -m pytest`` or ``python -m train.<script>`` run
    from it would make the pack's folders top-level modules, and our ``kernels/`` would then shadow the ``kernels``
    distribution that transformers (5.x depends on it) imports. ComfyUI never puts a pack's folder on the path.
    """
    sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != PACK_ROOT]
    if alias not in sys.modules:
        spec = importlib.util.spec_from_file_location(alias, PACK_ROOT / "__init__.py",
                                                      submodule_search_locations=[str(PACK_ROOT)])
        sys.modules[alias] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[alias])
    return sys.modules[alias]
