"""Shared by the benchmark scripts: import the pack as ``flowar`` from this checkout, whatever its folder name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

PACK_ROOT = Path(__file__).resolve().parents[1]


def load_pack(alias: str = "flowar") -> ModuleType:
    """The pack's root package (relative imports only inside it, so it loads under any name)."""
    if alias not in sys.modules:
        spec = importlib.util.spec_from_file_location(alias, PACK_ROOT / "__init__.py",
                                                      submodule_search_locations=[str(PACK_ROOT)])
        sys.modules[alias] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[alias])
    return sys.modules[alias]
