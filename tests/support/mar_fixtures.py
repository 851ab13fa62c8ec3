"""MAR parity fixtures: the MAR model built from a case's checkpoint, and the fixtures' closeness rule."""

from __future__ import annotations

import torch

from flowar.models.checkpoint import load_checkpoint
from flowar.models.mar import MAR
from flowar.models.mar_release import mar_config_from_weights


def fixture_mar(case) -> MAR:
    """The checkpoint's default entry (must be ``model_ema``: the fixtures' ``model`` differs), sized from its
    weights, heads from the case's constructor arguments (a sidecar's role; the fixture folder has none)."""
    state_dict = load_checkpoint(case.path / case.config["checkpoint"]["file"], "mar")
    model = MAR(mar_config_from_weights(state_dict, case.config["constructor"])).eval()
    model.load_state_dict(state_dict, strict=True)
    return model


def within(actual: torch.Tensor, expected: torch.Tensor, rel: float, msg: str) -> None:
    """``max|a - b| <= rel * max(1, max|expected|)`` (the fixtures' rule for large sampled values)."""
    bound = rel * max(1.0, expected.abs().max().item())
    error = (actual.to(expected.dtype) - expected).abs().max().item()
    assert error <= bound, f"{msg}: max error {error:.3g} > {bound:.3g}"
