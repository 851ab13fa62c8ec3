"""ARPG parity fixtures: the ``arpg`` cases by kind, their tolerances, the closeness check, and the ARPG transformer
and VQ tokenizer built from a case's ``config.json`` and checkpoint."""

from __future__ import annotations

import json
import re

import torch
from support.fixtures import FixtureCase, case_params

from flowar.models.arpg import ARPGConfig, ARPGTransformer
from flowar.models.checkpoint import load_checkpoint, load_strict
from flowar.models.vq16 import VQConfig, VQModel

VQ_CONSTRUCTOR_NAMES = {"ch", "ch_mult", "encoder_ch_mult", "decoder_ch_mult", "num_res_blocks", "z_channels",
                        "codebook_size", "codebook_embed_dim", "codebook_l2_norm", "codebook_show_usage", "dropout_p",
                        "norm_type", "commit_loss_beta", "entropy_loss_ratio"}  # the rest are run settings


def tolerances(case: FixtureCase) -> dict:
    """The ``## Tolerances`` JSON of ``CASES.md`` (which governs), else ``config.json``'s."""
    notes = case.path / "CASES.md"
    text = notes.read_text() if notes.is_file() else ""
    found = re.search(r"^## Tolerances[^\n]*\n+(\{[^\n]*\})", text, re.M)
    return json.loads(found.group(1)) if found else case.config["tolerances"]


def close(actual: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float = 0.0, msg: str = "") -> float:
    """Assert closeness (integers and booleans exactly) and return the largest finite absolute error."""
    if not expected.is_floating_point():
        assert torch.equal(actual.to(expected.dtype).reshape(expected.shape), expected), msg
        return 0.0
    actual = actual.to(expected.dtype).reshape(expected.shape)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol, msg=msg)
    finite = torch.isfinite(expected)
    return (actual[finite] - expected[finite]).abs().max().item() if finite.any() else 0.0


def is_arpg(case: FixtureCase) -> bool:
    return "n_layer" in case.config.get("model_args", {})


def is_vq(case: FixtureCase) -> bool:
    return "codebook_size" in case.config.get("model_args", {})


def cases(kind) -> list:
    """The ``arpg`` fixture params whose case is of ``kind`` (``is_arpg`` or ``is_vq``), or the family's skip."""
    return [param for param in case_params("arpg") if param.values[0] is None or kind(param.values[0])]


def fixture_arpg(case: FixtureCase) -> ARPGTransformer:
    model = ARPGTransformer(ARPGConfig.from_model_args(case.config["model_args"])).eval()
    load_strict(model, load_checkpoint(case.path / case.config["checkpoint"]["file"], "arpg"), source=case.name)
    return model


def fixture_vq(case: FixtureCase) -> VQModel:
    args = {name: value for name, value in case.config["model_args"].items() if name in VQ_CONSTRUCTOR_NAMES}
    model = VQModel(VQConfig.from_params(args)).eval()
    load_strict(model, load_checkpoint(case.path / case.config["checkpoint"]["file"], "vq"), source=case.name)
    return model
