"""Safe reading, container unwrapping, strict loading and config precedence of checkpoints."""

from __future__ import annotations

import argparse
import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from support.checkpoints import (
    family_state_dict,
    write_arpg,
    write_mar,
    write_model_container,
    write_pixelflow,
)
from torch import nn

from flowar.models.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_strict,
    read_checkpoint,
    state_dict_mismatch,
)
from flowar.models.config import resolve_config


def one_line(err: pytest.ExceptionInfo) -> str:
    return str(err.value).splitlines()[0]


# ---- reading files --------------------------------------------------------------------------------------------
def test_reads_safetensors_and_pickles(tmp_path: Path) -> None:
    tensors = {"a": torch.arange(4.0), "b": torch.ones(2, 2)}
    save_file(tensors, tmp_path / "w.safetensors")
    torch.save(tensors, tmp_path / "w.pt")
    for name in ("w.safetensors", "w.pt"):
        loaded = read_checkpoint(tmp_path / name)
        assert set(loaded) == {"a", "b"} and torch.equal(loaded["a"], tensors["a"])


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "weights.onnx").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unsupported checkpoint extension '.onnx'"):
        read_checkpoint(tmp_path / "weights.onnx")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_truncated_file_is_reported(tmp_path: Path, suffix: str) -> None:
    full = tmp_path / f"full{suffix}"
    tensors = {"w": torch.randn(64, 64)}
    save_file(tensors, full) if suffix == ".safetensors" else torch.save(tensors, full)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(cut)
    assert str(cut) in one_line(err) and "truncated" in one_line(err)


@pytest.mark.parametrize("suffix", [".pt", ".ckpt", ".safetensors"])
def test_non_checkpoint_file_is_reported(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"notes{suffix}"
    path.write_text("these are not weights\n" * 10)
    with pytest.raises(CheckpointError, match="not a (readable checkpoint|valid safetensors file)"):
        read_checkpoint(path)


class _Exploit:
    """Unpickling this would create ``target``: a stand-in for code execution from a malicious checkpoint."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_pickle_needing_disallowed_global_is_refused_not_executed(tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.ones(1)}, "payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert "refused" in one_line(err) and "open" in one_line(err)
    assert not marker.exists()


def test_namespace_allowed_only_inside_the_mar_load(tmp_path: Path) -> None:
    path = write_mar(tmp_path / "checkpoint-last.pth", family_state_dict("mar"))
    with pytest.raises(CheckpointError, match="argparse.Namespace"):
        read_checkpoint(path)  # no allowance given: refused
    assert set(load_checkpoint(path, "mar")) == set(family_state_dict("mar"))
    with pytest.raises(pickle.UnpicklingError):  # the allowance did not leak process-wide
        torch.load(path, weights_only=True)


# ---- containers -----------------------------------------------------------------------------------------------
def test_each_official_container_unwraps(tmp_path: Path) -> None:
    written = {
        "pixelflow": write_pixelflow(tmp_path / "pf", family_state_dict("pixelflow")),
        "arpg": write_arpg(tmp_path / "arpg_300m.pt", family_state_dict("arpg")),
        "vq": write_model_container(tmp_path / "vq_ds16_c2i.pt", family_state_dict("vq")),
        "kl16": write_model_container(tmp_path / "kl16.ckpt", family_state_dict("kl16")),
    }
    for family, path in written.items():
        loaded = load_checkpoint(path, family)
        expected = family_state_dict(family)
        assert set(loaded) == set(expected), family
        assert all(torch.equal(loaded[k], expected[k]) for k in expected), family


def test_mar_prefers_ema_and_can_take_the_raw_weights(tmp_path: Path) -> None:
    path = write_mar(tmp_path / "checkpoint-last.pth", family_state_dict("mar"))
    expected = family_state_dict("mar")
    ema = load_checkpoint(path, "mar")
    raw = load_checkpoint(path, "mar", container="model")
    assert all(torch.equal(ema[k], expected[k]) for k in expected)
    assert not any(torch.equal(raw[k], expected[k]) for k in expected)
    with pytest.raises(CheckpointError, match="no 'optimizer' entry"):
        load_checkpoint(path, "mar", container="optimizer")


def test_wrapper_prefixes_are_stripped(tmp_path: Path) -> None:
    state = {f"module._orig_mod.{k}": v for k, v in family_state_dict("arpg").items()}
    path = write_arpg(tmp_path / "compiled.pt", state)
    assert set(load_checkpoint(path, "arpg")) == set(family_state_dict("arpg"))


@pytest.mark.parametrize(
    "written,wanted",
    [("mar", "arpg"), ("arpg", "pixelflow"), ("pixelflow", "mar"), ("vq", "kl16"), ("kl16", "vq")],
)
def test_checkpoint_of_another_family_names_the_right_loader(tmp_path: Path, written: str, wanted: str) -> None:
    writers = {
        "pixelflow": lambda: write_pixelflow(tmp_path / "pf", family_state_dict("pixelflow")),
        "mar": lambda: write_mar(tmp_path / "m.pth", family_state_dict("mar")),
        "arpg": lambda: write_arpg(tmp_path / "a.pt", family_state_dict("arpg")),
        "vq": lambda: write_model_container(tmp_path / "vq.pt", family_state_dict("vq")),
        "kl16": lambda: write_model_container(tmp_path / "kl.ckpt", family_state_dict("kl16")),
    }
    path = writers[written]()
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, wanted)
    from flowar.models.families import FAMILIES

    assert f"looks like a {FAMILIES[written].title} checkpoint" in one_line(err)
    assert FAMILIES[written].loader in one_line(err)


def test_non_dict_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save([torch.ones(1)], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="holds a list, not a state dict"):
        load_checkpoint(tmp_path / "list.pt", "pixelflow")


# ---- strict loading -------------------------------------------------------------------------------------------
class Tiny(nn.Module):
    def __init__(self, width: int = 4, depth: int = 2, heads: int = 1) -> None:
        super().__init__()
        self.heads = heads
        self.blocks = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))


def test_strict_load_reports_missing_unexpected_and_misshaped_keys() -> None:
    state = Tiny().state_dict()
    state.pop("blocks.1.bias")
    state["extra.weight"] = torch.zeros(1)
    state["blocks.0.weight"] = torch.zeros(3, 4)
    with pytest.raises(CheckpointError) as err:
        load_strict(Tiny(), state, source="tiny.pt")
    first = one_line(err)
    assert first == "tiny.pt does not fit Tiny: 1 missing, 1 unexpected, 1 mis-shaped keys"
    body = str(err.value)
    assert "blocks.1.bias" in body and "extra.weight" in body and "blocks.0.weight: file (3, 4) vs model (4, 4)" in body


def test_strict_load_into_meta_module_assigns_the_file_tensors() -> None:
    state = Tiny().state_dict()
    with torch.device("meta"):
        module = Tiny()
    load_strict(module, state, source="tiny.pt")
    assert torch.equal(module.blocks[0].weight, state["blocks.0.weight"])
    assert state_dict_mismatch(module, state) is None


def test_strict_load_names_the_family_of_a_wrong_file() -> None:
    with pytest.raises(CheckpointError, match="looks like a ARPG checkpoint: load it with ARPG Loader \\(FlowAR\\)"):
        load_strict(Tiny(), family_state_dict("arpg"), source="x.pt")


# ---- configuration precedence ---------------------------------------------------------------------------------
PRESETS = {"small": {"width": 4, "depth": 2, "heads": 1}, "large": {"width": 8, "depth": 3, "heads": 2}}


def build(config: dict) -> Tiny:
    return Tiny(**config)


def resolve(path: Path, state: dict, presets=PRESETS, sidecar_names=()):
    return resolve_config(path, state, presets=presets, build=build, from_sidecar=lambda d: dict(d["params"]),
                          sidecar_names=sidecar_names)


def test_sidecar_beats_preset(tmp_path: Path) -> None:
    checkpoint = tmp_path / "tiny.pt"
    (tmp_path / "tiny.json").write_text(json.dumps({"params": {"width": 4, "depth": 2, "heads": 4}}))
    config, origin = resolve(checkpoint, Tiny().state_dict())
    assert config["heads"] == 4 and origin.endswith("tiny.json")


def test_yaml_sidecar_by_name(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("params:\n  width: 8\n  depth: 3\n  heads: 8\n")
    config, origin = resolve(tmp_path / "model.pt", Tiny(8, 3).state_dict(), sidecar_names=("config.yaml",))
    assert config["heads"] == 8 and origin.endswith("config.yaml")


def test_preset_matched_by_shapes(tmp_path: Path) -> None:
    config, origin = resolve(tmp_path / "model.pt", Tiny(8, 3).state_dict())
    assert config == PRESETS["large"] and origin == "preset large"


def test_no_sidecar_and_no_matching_preset_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        resolve(tmp_path / "model.pt", Tiny(6, 2).state_dict())
    assert "matches no known release configuration" in one_line(err) and "small:" in one_line(err)


def test_ambiguous_presets_ask_for_the_config_file(tmp_path: Path) -> None:
    presets = {"a": {"width": 4, "depth": 2, "heads": 1}, "b": {"width": 4, "depth": 2, "heads": 2}}
    with pytest.raises(CheckpointError, match="fits several presets"):
        resolve(tmp_path / "model.pt", Tiny().state_dict(), presets=presets)


@pytest.mark.parametrize("content", ["params: [unclosed", "- just\n- a list\n", "other: 1\n"])
def test_malformed_sidecar_is_reported(tmp_path: Path, content: str) -> None:
    (tmp_path / "config.yaml").write_text(content)
    with pytest.raises(CheckpointError, match="config file .*config.yaml"):
        resolve(tmp_path / "model.pt", Tiny().state_dict(), sidecar_names=("config.yaml",))


def test_argparse_namespace_is_not_allowed_by_default() -> None:
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
