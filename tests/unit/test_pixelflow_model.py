"""PixelFlow transformer: official key lists at release size, and forward parity with the fixtures."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
from support.fixtures import REPO_ROOT, case_params
from support.pixelflow_fixtures import fixture_model

from flowar.models.checkpoint import state_dict_mismatch
from flowar.models.pixelflow import PixelFlowConfig, PixelFlowModel

KEY_LISTS = sorted((REPO_ROOT.parent / "shared" / "research" / "keys").glob("pixelflow_*.txt"))


def read_key_list(path: Path) -> tuple[dict, dict[str, tuple[int, ...]]]:
    """The constructor params from the header line and ``name -> shape`` from the rest."""
    lines = path.read_text().splitlines()
    params = ast.literal_eval(re.search(r"params=(\{.*?\})", lines[0]).group(1))
    shapes = {}
    for line in lines[1:]:
        if line.strip():
            name, shape = line.split("\t")
            shapes[name] = tuple(ast.literal_eval(shape))
    return params, shapes


@pytest.mark.parametrize("key_list", KEY_LISTS, ids=lambda p: p.stem)
def test_release_key_lists_load_strictly_at_release_size(key_list: Path) -> None:
    params, shapes = read_key_list(key_list)
    with torch.device("meta"):
        model = PixelFlowModel(PixelFlowConfig.from_params(params))
    release = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    assert state_dict_mismatch(model, release) is None
    model.load_state_dict(release, strict=True, assign=True)


def forward_groups(tensors: dict) -> list[str]:
    """Prefixes of every recorded single model call: a ``hidden_states`` input beside an ``output``."""
    return sorted(name[: -len(".output")] for name in tensors
                  if name.endswith(".output") and name[: -len("output")] + "hidden_states" in tensors)


@pytest.mark.parametrize("case", case_params("pixelflow"))
def test_pixelflow_forward_matches_fixtures(case) -> None:
    if "model_params" not in case.config:
        pytest.skip(f"{case.name} has no model")
    model = fixture_model(case)
    tolerance = case.config["tolerances"]["forward"]
    tensors = case.tensors
    groups = forward_groups(tensors)
    assert groups, f"{case.name} records no model call"
    for group in groups:
        get = lambda name: tensors.get(f"{group}.{name}")  # noqa: E731
        labels = get("class_labels")
        with torch.no_grad():
            out = model(get("hidden_states"), get("timestep"), latent_size=get("latent_size"),
                        pos_embed=get("pos_embed"), class_labels=labels.long() if labels is not None else None,
                        context=get("encoder_hidden_states"), context_mask=get("encoder_attention_mask"))
        torch.testing.assert_close(out, get("output"), atol=tolerance["atol"], rtol=tolerance["rtol"], msg=group)
