"""Parity-fixture discovery (``support.fixtures``): a family missing from the fixture set is a skip on a developer's
machine, and an error naming the root and the family whenever ``FLOWAR_FIXTURES`` or ``CI`` is set."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fixtures import CASE_FILE, case_params, fixtures_root


@pytest.fixture
def no_fixture_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("FLOWAR_FIXTURES", raising=False)
    monkeypatch.delenv("CI", raising=False)
    return monkeypatch


def test_a_missing_family_is_a_skip_without_ci_or_a_fixture_root(no_fixture_env, tmp_path: Path) -> None:
    no_fixture_env.setattr("support.fixtures.REPO_ROOT", tmp_path / "repo")  # default root: tmp/shared/fixtures
    assert fixtures_root() == (tmp_path / "shared" / "fixtures").resolve()
    (param,) = case_params("pixelflow")
    assert param.values == (None,)
    (mark,) = param.marks
    assert mark.name == "skip" and mark.kwargs["reason"] == f"no pixelflow fixtures under {fixtures_root()}"


@pytest.mark.parametrize("variable", ["FLOWAR_FIXTURES", "CI"])
def test_a_missing_family_is_an_error_with_ci_or_a_fixture_root(no_fixture_env, tmp_path: Path, variable: str) -> None:
    empty = tmp_path / "shared" / "fixtures"
    empty.mkdir(parents=True)
    no_fixture_env.setattr("support.fixtures.REPO_ROOT", tmp_path / "repo")  # default root: tmp/shared/fixtures
    no_fixture_env.setenv(variable, str(empty) if variable == "FLOWAR_FIXTURES" else "true")
    with pytest.raises(pytest.fail.Exception) as raised:
        case_params("mar")
    message = str(raised.value)
    assert f"no mar fixtures under {empty.resolve()}" in message and "FLOWAR_FIXTURES or CI is set" in message


def test_a_present_family_gives_one_param_per_case_whatever_the_environment(no_fixture_env, tmp_path: Path) -> None:
    for case in ("arpg/b", "arpg/a/deep"):
        (tmp_path / case).mkdir(parents=True)
        (tmp_path / case / CASE_FILE).write_bytes(b"")
    no_fixture_env.setenv("FLOWAR_FIXTURES", str(tmp_path))
    no_fixture_env.setenv("CI", "1")
    assert [param.id for param in case_params("arpg")] == ["arpg/a/deep", "arpg/b"]
