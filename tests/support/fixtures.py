"""Discovery of parity-fixture cases under ``FLOWAR_FIXTURES`` (default ``../shared/fixtures``).

A fixture root holds one folder per family; a case is any folder below it holding ``cases.safetensors``
(with its ``config.json`` and ``CASES.md``). Tests derive every length, shape and name from these files, so
they pass on any fixture set made the same way. A family missing from the set is a skip on a developer's machine
and an error whenever ``FLOWAR_FIXTURES`` or ``CI`` is set.
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


def fixtures_required() -> bool:
    """Whether missing fixtures are an error: ``FLOWAR_FIXTURES`` or ``CI`` is set (to anything but empty)."""
    return bool(os.environ.get("FLOWAR_FIXTURES") or os.environ.get("CI"))


def case_params(family: str) -> list:
    """``pytest.param`` per case, named ``<family>/<case>``. When the fixture set lacks the family: a collection
    error naming the root and the family if ``fixtures_required()`` (CI, or a fixture root given explicitly),
    else a single skip (a developer without ``../shared``)."""
    cases = discover_cases(family)
    if not cases:
        message = f"no {family} fixtures under {fixtures_root()}"
        if fixtures_required():
            pytest.fail(f"{message} (FLOWAR_FIXTURES or CI is set, so missing parity fixtures are an error)",
                        pytrace=False)
        return [pytest.param(None, marks=pytest.mark.skip(reason=message))]
    return [pytest.param(case, id=case.name) for case in cases]
