"""ARPG transformer and VQ-16 tokenizer: release key lists at full size, and parity with the official fixtures.

Every name, size and tolerance comes from each case's own files (``config.json``, tensor names, ``CASES.md``), so
the tests pass on any fixture set made the same way.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from support.arpg_fixtures import cases, close, fixture_arpg, fixture_vq, is_arpg, is_vq, tolerances
from support.fixtures import REPO_ROOT

from flowar.models.arpg import ARPGConfig, ARPGTransformer
from flowar.models.arpg_release import ARPG_PRESETS, VQ_PRESETS
from flowar.models.checkpoint import load_strict, state_dict_mismatch
from flowar.models.vq16 import VQConfig, VQModel
from flowar.samplers.pixels import pixels_to_image

KEY_DIR = REPO_ROOT.parent / "shared" / "research" / "keys"
KEY_LISTS = sorted(KEY_DIR.glob("arpg_*.txt")) + sorted(KEY_DIR.glob("llamagen_vq*.txt"))


def read_key_list(path: Path) -> tuple[str, dict[str, tuple[int, ...]]]:
    """The release name of the header (``# ARPG-L: ...``) and ``name -> shape`` from the ``name (shape)`` lines."""
    lines = path.read_text().splitlines()
    release = re.match(r"#\s*([^:]+):", lines[0]).group(1).strip()
    shapes = {}
    for line in lines[1:]:
        if line.strip():
            name, shape = line.split(" ", 1)
            shapes[name] = tuple(ast.literal_eval(shape))
    return release, shapes


@pytest.mark.parametrize("key_list", KEY_LISTS, ids=lambda p: p.stem)
def test_release_key_lists_load_strictly_at_release_size(key_list: Path) -> None:
    release, shapes = read_key_list(key_list)
    presets = {**ARPG_PRESETS, **VQ_PRESETS}
    assert release in presets, f"no preset named {release}"
    build = ARPGTransformer if release in ARPG_PRESETS else VQModel
    with torch.device("meta"):
        model = build(presets[release])
    weights = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    assert state_dict_mismatch(model, weights) is None
    load_strict(model, weights, source=key_list.name)
    header_count = int(re.search(r"(\d+) elements", key_list.read_text().splitlines()[0]).group(1))
    assert sum(t.numel() for t in model.state_dict().values()) == header_count


# ---------------------------------------------------------------------------------------------- fixture helpers

def prefixes_with(tensors: dict, suffix: str) -> list[str]:
    """Group prefixes that record a tensor named ``<prefix>.<suffix>``."""
    return sorted(name[: -len(suffix) - 1] for name in tensors if name.endswith("." + suffix))


# ------------------------------------------------------------------------------------------------- transformer

@pytest.mark.parametrize("case", cases(is_arpg))
def test_arpg_rope_table_matches_fixture(case) -> None:
    model = fixture_arpg(case)
    tables = case.tensors_ending("freqs_cis")
    assert tables, f"{case.name} records no RoPE table"
    grid = model.config.grid_size
    for name, recorded in tables.items():
        close(model.rope_table(grid, grid), recorded, tolerances(case)["hidden_atol"], msg=name)


@pytest.mark.parametrize("case", cases(is_arpg))
def test_arpg_training_forward_matches_fixture(case) -> None:
    """The official training forward on a given order: causal in both passes, per-pass outputs, logits, loss; and
    the same call in eval mode, where the official code drops the causal mask."""
    model, tol, tensors = fixture_arpg(case), tolerances(case), case.tensors
    groups = prefixes_with(tensors, "seq_in")
    assert groups, f"{case.name} records no training forward"
    config = model.config
    grid = config.grid_size
    table = model.rope_table(grid, grid)
    captured = {}
    model.layers.self_dec[-1].register_forward_hook(lambda m, i, out: captured.__setitem__("self_out", out))
    model.layers.cross_dec[-1].register_forward_hook(lambda m, i, out: captured.__setitem__("cross_out", out))
    for group in groups:
        get = lambda name: tensors[f"{group}.{name}"]  # noqa: E731
        orders, ids = get("orders"), get("input_ids")
        shuffled = ids.gather(1, orders)
        seq_in = torch.cat([config.class_token_id(get("condition"))[:, None], shuffled[:, :-1]], dim=1)
        key_rows = torch.cat([torch.zeros_like(orders[:, :1]), orders[:, :-1] + 1], dim=1)
        for name, ours in (("seq_in", seq_in), ("targets_shuffled", shuffled), ("key_pos_index", key_rows),
                           ("query_pos_index", orders + 1)):
            close(ours, get(name), 0, msg=name)  # the official convention, as CASES.md states it
        with torch.no_grad():
            logits = model(seq_in, table[key_rows], table[orders + 1], causal=True)
            close(captured["self_out"], get("self_out"), tol["hidden_atol"], msg="self_out")
            close(captured["cross_out"], get("cross_out"), tol["hidden_atol"], msg="cross_out")
            close(logits, get("logits"), tol["logits_atol"], tol["logits_rtol"], msg="logits")
            loss = F.cross_entropy(logits.flatten(0, 1), shuffled.flatten())
            close(loss.reshape(1), get("loss"), tol["logits_atol"], tol["logits_rtol"], msg="loss")
            eval_logits = model(seq_in, table[key_rows], table[orders + 1])
            close(eval_logits, get("logits_noncausal_evalmode"), tol["logits_atol"], tol["logits_rtol"])
        assert not torch.allclose(logits, eval_logits)  # the mode dependence is real


def test_config_from_official_model_args() -> None:
    official = {"dim": 64, "n_layer": 4, "n_head": 4, "vocab_size": 64, "num_classes": 10, "block_size": 16,
                "multiple_of": 16, "token_dropout_p": 0.1, "class_dropout_prob": 0.1, "model_type": "c2i"}
    config = ARPGConfig.from_model_args(official)
    assert (config.ffn_hidden, config.grid_size, config.null_class_id, config.mask_token_id) == (176, 4, 75, 64)
    assert ARPG_PRESETS["ARPG-L"].ffn_hidden == 2816 and ARPG_PRESETS["ARPG-XXL"].ffn_hidden == 4096
    with pytest.raises(ValueError, match="unknown ARPG model arguments \\['heads'\\]"):
        ARPGConfig.from_model_args({**official, "heads": 4})
    with pytest.raises(ValueError, match="n_layer must be even"):
        ARPGConfig(dim=64, n_layer=3, n_head=4)
    with pytest.raises(ValueError, match="square token grid"):
        ARPGConfig(dim=64, n_layer=2, n_head=4, block_size=20)


def test_rope_rows_of_a_larger_grid_keep_the_trained_positions() -> None:
    model = ARPGTransformer(ARPGConfig(dim=32, n_layer=2, n_head=2, vocab_size=8, num_classes=2, block_size=16,
                                       multiple_of=16), device="meta")
    trained = model.rope_table(4, 4)  # (17, 8, 2)
    wide = model.rope_table(4, 6)  # 4 rows of 6 columns
    assert wide.shape == (1 + 24, 8, 2) and torch.count_nonzero(wide[0]) == 0
    for row in range(4):
        torch.testing.assert_close(wide[1 + row * 6: 1 + row * 6 + 4], trained[1 + row * 4: 1 + row * 4 + 4])


# --------------------------------------------------------------------------------------------------- tokenizer

def latent_grid(vq: VQModel, images: torch.Tensor) -> tuple[int, int]:
    return images.shape[-2] // vq.config.downsample, images.shape[-1] // vq.config.downsample


@pytest.mark.parametrize("case", cases(is_vq))
def test_vq_decode_matches_fixture(case) -> None:
    vq, tol, tensors = fixture_vq(case), tolerances(case), case.tensors
    groups = prefixes_with(tensors, "ids")
    assert groups, f"{case.name} records no decode"
    captured = {}
    vq.post_quant_conv.register_forward_hook(lambda m, i, out: captured.__setitem__("post_quant", out))
    for group in groups:
        expected = tensors[f"{group}.image"]
        ids = tensors[f"{group}.ids"].reshape(-1, *latent_grid(vq, expected))
        with torch.no_grad():
            codes = vq.quantize.entries(ids)
            image = vq.decode(codes)
            via_indices = vq.decode_indices(ids)
        close(codes, tensors[f"{group}.zq"], tol["hidden_atol"], msg="zq")
        close(captured["post_quant"], tensors[f"{group}.post_quant"], tol["hidden_atol"], msg="post_quant")
        close(image, expected, tol["image_atol"], msg="image")
        close(via_indices, expected, tol["image_atol"], msg="decode_indices")


@pytest.mark.parametrize("case", cases(is_vq))
def test_vq_encode_matches_fixture(case) -> None:
    vq, tol, tensors = fixture_vq(case), tolerances(case), case.tensors
    groups = prefixes_with(tensors, "indices")
    assert groups, f"{case.name} records no encode"
    captured = {}
    vq.encoder.register_forward_hook(lambda m, i, out: captured.__setitem__("encoder_out", out))
    vq.quant_conv.register_forward_hook(lambda m, i, out: captured.__setitem__("quant_conv_out", out))
    for group in groups:
        with torch.no_grad():
            indices = vq.encode_indices(tensors[f"{group}.image"])
            quant = vq.quantize.entries(indices)
            decoded = vq.decode(quant)
        close(captured["encoder_out"], tensors[f"{group}.encoder_out"], tol["hidden_atol"], msg="encoder_out")
        close(captured["quant_conv_out"], tensors[f"{group}.quant_conv_out"], tol["hidden_atol"], msg="quant_conv")
        close(indices.flatten(1), tensors[f"{group}.indices"], 0, msg="indices")  # exact
        close(quant, tensors[f"{group}.quant"], tol["hidden_atol"], msg="quant")
        close(decoded, tensors[f"{group}.decoded_image"], tol["image_atol"], msg="decoded_image")


@pytest.mark.parametrize("case", cases(is_vq))
def test_vq_decodes_sampled_tokens_like_the_official_pipeline(case) -> None:
    """Sampled tokens -> image, and our IMAGE mapping ``clamp(x/2 + 1/2)`` against the official uint8 export
    (``clamp(127.5 x + 128)`` truncated), within the stated one level."""
    vq, tol, tensors = fixture_vq(case), tolerances(case), case.tensors
    groups = prefixes_with(tensors, "tokens_raster")
    assert groups, f"{case.name} records no end-to-end decode"
    for group in groups:
        expected = tensors[f"{group}.image"]
        tokens = tensors[f"{group}.tokens_raster"].reshape(-1, *latent_grid(vq, expected))
        with torch.no_grad():
            image = vq.decode_indices(tokens)
        close(image, expected, tol["image_atol"], msg="image")
        levels = (pixels_to_image(image) * 255).round()
        assert (levels - tensors[f"{group}.image_uint8_nhwc"].float()).abs().max() <= 1


def test_vq_config_from_official_names() -> None:
    official = {"codebook_size": 64, "codebook_embed_dim": 8, "encoder_ch_mult": [2, 1], "decoder_ch_mult": [2, 1],
                "z_channels": 16, "dropout_p": 0.0, "commit_loss_beta": 0.25, "ch": 32, "num_res_blocks": 1}
    config = VQConfig.from_params(official)
    assert config.ch_mult == (2, 1) and config.downsample == 2
    assert VQ_PRESETS["VQ-16"].downsample == 16
    with pytest.raises(ValueError, match="multipliers differ"):
        VQConfig.from_params({**official, "decoder_ch_mult": [1, 1]})
    with pytest.raises(ValueError, match="unknown VQ tokenizer parameters \\['levels'\\]"):
        VQConfig.from_params({**official, "levels": 3})
