"""Discovery of parity-fixture cases under ``FLOWAR_FIXTURES`` (default ``../shared/fixtures``).

A fixture root holds one folder per family; a case is any folder below it holding ``cases.safetensors``
(with its ``config.json`` and ``CASES.md``). Tests derive every length, shape and name from these files, so
they pass on any fixture set made the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest
from safetensors.torch import load_file
from torch import Tensor

REPO_ROOT = Path(__file__).resolve().parents[2]
CASE_FILE = "cases.safetensors"


def fixtures_root() -> Path:
    """The fixture root: ``$FLOWAR_FIXTURES``, else ``../shared/fixtures`` beside the repository."""
    configured = os.environ.get("FLOWAR_FIXTURES")
    return Path(configured).resolve() if configured else (REPO_ROOT.parent / "shared" / "fixtures").resolve()


@dataclass(frozen=True)
class FixtureCase:
    """One case folder: its tensors, its config and its notes."""

    family: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.relative_to(fixtures_root()).as_posix()

    @cached_property
    def tensors(self) -> dict[str, Tensor]:
        return load_file(str(self.path / CASE_FILE))

    @cached_property
    def config(self) -> dict:
        config_file = self.path / "config.json"
        return json.loads(config_file.read_text()) if config_file.is_file() else {}

    def tensors_ending(self, suffix: str) -> dict[str, Tensor]:
        """Every tensor whose name ends with ``suffix``."""
        return {name: value for name, value in self.tensors.items() if name.endswith(suffix)}


def discover_cases(family: str) -> list[FixtureCase]:
    """All cases of ``family`` (a folder under the root), sorted by path; empty when the family is absent."""
    family_root = fixtures_root() / family
    if not family_root.is_dir():
        return []
    return [FixtureCase(family, found.parent) for found in sorted(family_root.rglob(CASE_FILE))]


def case_params(family: str) -> list:
    """``pytest.param`` per case, named ``<family>/<case>``; a single skip when the fixture set lacks the family."""
    cases = discover_cases(family)
    if not cases:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no {family} fixtures under {fixtures_root()}"))]
    return [pytest.param(case, id=case.name) for case in cases]
