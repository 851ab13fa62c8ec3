"""The Flan-T5 text encoder of PixelFlow t2i: every file layout users have, the official encoding, and the errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from support.t5 import (
    COMFY_PREFIX,
    VOCAB_SIZE,
    full_t5,
    reference_encoder,
    t5_encoder_state_dict,
    tokenizer_object,
    write_t5_encoder_file,
    write_t5_folder,
    write_t5_tokenizer,
)
from torch import Tensor, nn
from transformers import T5Config, T5EncoderModel

from flowar.models.checkpoint import CheckpointError
from flowar.models.flan_t5 import T5TextEncoder, _infer_config, load_t5_encoder

PROMPTS = ["a cat", ""]


def one_line(err: pytest.ExceptionInfo) -> str:
    return str(err.value).splitlines()[0]


def reference(prompts: list[str], max_length: int) -> tuple[Tensor, Tensor]:
    """Hidden states and mask computed directly: ids from the raw tokenizer, padded by hand, then T5EncoderModel."""
    ids = torch.zeros(len(prompts), max_length, dtype=torch.int64)  # <pad> = 0
    for row, prompt in enumerate(prompts):
        tokens = tokenizer_object().encode(prompt).ids  # ends with </s>
        ids[row, : len(tokens)] = torch.tensor(tokens)
    mask = (torch.arange(max_length) < (ids != 0).sum(1, keepdim=True)).long()  # (B, L)
    with torch.no_grad():
        hidden = reference_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, L, 32)
    return hidden, mask


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_t5_tokenizer(tmp_path_factory.mktemp("t5_tokenizer"))


@pytest.fixture(scope="module")
def full_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_t5_folder(tmp_path_factory.mktemp("flan-t5-xl"), full_model=True)


# ---- 1. Hugging Face folder -----------------------------------------------------------------------------------
def test_hf_folder_encodes_like_the_official_pipeline(full_folder: Path) -> None:
    encoder = load_t5_encoder(full_folder)
    hidden, mask = encoder.encode(PROMPTS, max_length=16)
    expected_hidden, expected_mask = reference(PROMPTS, 16)
    assert hidden.shape == (2, 16, 32) and mask.shape == (2, 16)
    assert hidden.dtype == torch.float32 and mask.dtype == torch.int64
    assert mask.tolist() == [[1] * 3 + [0] * 13, [1] + [0] * 15]  # ▁a ▁cat </s> | </s>; the rest is padding
    assert torch.equal(mask, expected_mask)
    torch.testing.assert_close(hidden, expected_hidden)
    assert not encoder.model.training and encoder.hidden_size == 32


def test_encoder_only_folder_with_tokenizer_elsewhere(tmp_path: Path, tokenizer_dir: Path) -> None:
    folder = write_t5_folder(tmp_path / "encoder", full_model=False, tokenizer=False)
    encoder = load_t5_encoder(folder, tokenizer_dirs=[tmp_path / "absent", tokenizer_dir])
    torch.testing.assert_close(encoder.encode(PROMPTS, max_length=16)[0], reference(PROMPTS, 16)[0])


# ---- 2. single weights files ----------------------------------------------------------------------------------
def _full_model_file(path: Path) -> Path:
    """A whole T5ForConditionalGeneration state dict (decoder and lm_head included) under ComfyUI's prefix."""
    state_dict = {name: value.clone() for name, value in full_t5().state_dict().items()}
    return write_t5_encoder_file(path, COMFY_PREFIX, state_dict=state_dict)


def _embed_tokens_only_file(path: Path) -> Path:
    state_dict = t5_encoder_state_dict()
    del state_dict["shared.weight"]
    return write_t5_encoder_file(path, state_dict=state_dict)


@pytest.mark.parametrize(
    "write",
    [
        lambda tmp: write_t5_encoder_file(tmp / "t5_encoder.safetensors"),
        lambda tmp: write_t5_encoder_file(tmp / "t5_comfy.safetensors", COMFY_PREFIX),
        lambda tmp: write_t5_encoder_file(tmp / "t5_encoder.pt"),
        lambda tmp: _full_model_file(tmp / "t5_full.safetensors"),
        lambda tmp: _embed_tokens_only_file(tmp / "t5_embed_tokens.safetensors"),
    ],
    ids=["safetensors", "comfy-prefix", "pt", "full-model", "embed-tokens-only"],
)
def test_single_file_equals_the_folder(tmp_path: Path, tokenizer_dir: Path, full_folder: Path, write) -> None:
    encoder = load_t5_encoder(write(tmp_path), tokenizer_dirs=[tokenizer_dir])
    hidden, mask = encoder.encode(PROMPTS, max_length=16)
    folder_hidden, folder_mask = load_t5_encoder(full_folder).encode(PROMPTS, max_length=16)
    torch.testing.assert_close(hidden, folder_hidden)
    assert torch.equal(mask, folder_mask)
    assert encoder.model.shared.weight is encoder.model.encoder.embed_tokens.weight  # tied, as from_pretrained ties
    assert encoder.model.config.vocab_size == VOCAB_SIZE and encoder.model.config.feed_forward_proj == "gated-gelu"


def test_flan_t5_xl_config_is_read_from_its_shapes() -> None:
    """google/flan-t5-xl's config.json (encoder fields), recovered from a meta-device model's shapes."""
    xl = {"vocab_size": 32128, "d_model": 2048, "d_kv": 64, "d_ff": 5120, "num_layers": 24, "num_heads": 32}
    with torch.device("meta"):
        state_dict = T5EncoderModel(T5Config(**xl, feed_forward_proj="gated-gelu")).state_dict()
    config = _infer_config(state_dict, source=Path("flan-t5-xl.safetensors"))
    assert {name: getattr(config, name) for name in xl} == xl
    assert (config.feed_forward_proj, config.relative_attention_num_buckets, config.layer_norm_epsilon) == (
        "gated-gelu", 32, 1e-6)


# ---- 3. the mask ----------------------------------------------------------------------------------------------
def test_padding_does_not_change_real_tokens(full_folder: Path) -> None:
    encoder = load_t5_encoder(full_folder)
    short, short_mask = encoder.encode(PROMPTS, max_length=16)
    long, long_mask = encoder.encode(PROMPTS, max_length=24)
    real = short_mask.bool()  # (B, 16)
    assert torch.equal(long_mask[:, :16], short_mask) and not long_mask[:, 16:].any()
    torch.testing.assert_close(long[:, :16][real], short[real])
    ids = encoder.tokenizer(PROMPTS, padding="max_length", max_length=16, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        unmasked = encoder.model(input_ids=ids).last_hidden_state  # what dropping the mask would give
    assert not torch.allclose(unmasked[real], short[real], atol=1e-3)


def test_a_single_string_is_one_prompt(full_folder: Path) -> None:
    hidden, mask = load_t5_encoder(full_folder).encode("a cat", max_length=8)
    assert hidden.shape == (1, 8, 32) and mask.sum().item() == 3


def test_long_prompts_are_truncated(full_folder: Path) -> None:
    hidden, mask = load_t5_encoder(full_folder).encode(["a red cat on the grass " * 4, "a dog"], max_length=8)
    assert hidden.shape == (2, 8, 32) and mask.tolist() == [[1] * 8, [1] * 3 + [0] * 5]


# ---- 4. errors ------------------------------------------------------------------------------------------------
def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as err:
        load_t5_encoder(tmp_path / "flan-t5-xl")
    assert "not found" in one_line(err) and str(tmp_path / "flan-t5-xl") in one_line(err)


def test_folder_without_config_or_weights(tmp_path: Path) -> None:
    folder = write_t5_tokenizer(tmp_path / "flan-t5-xl")
    with pytest.raises(CheckpointError, match="no config.json"):
        load_t5_encoder(folder)
    full_t5().config.save_pretrained(folder)
    with pytest.raises(CheckpointError) as err:
        load_t5_encoder(folder)
    assert "no weights" in one_line(err) and "model.safetensors" in one_line(err)


def test_folder_of_another_model_type(tmp_path: Path) -> None:
    folder = write_t5_folder(tmp_path / "clip", full_model=False)
    config = json.loads((folder / "config.json").read_text()) | {"model_type": "clip"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="'clip' model, not T5"):
        load_t5_encoder(folder)


@pytest.mark.parametrize("fault", ["missing", "mis-shaped"])
def test_folder_with_wrong_weights_names_the_key(tmp_path: Path, fault: str) -> None:
    folder = write_t5_folder(tmp_path / "flan-t5-xl", full_model=False)
    state_dict, name = t5_encoder_state_dict(), "encoder.block.1.layer.0.SelfAttention.o.weight"
    if fault == "missing":
        del state_dict[name]
    else:
        state_dict[name] = torch.zeros(32, 16)
    save_file(state_dict, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError) as err:
        load_t5_encoder(folder)
    assert "do not fit its config.json" in one_line(err) and f"{fault} {name}" in one_line(err)


def test_folder_with_truncated_weights(tmp_path: Path) -> None:
    folder = write_t5_folder(tmp_path / "flan-t5-xl", full_model=False)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="cannot load the T5 encoder in .*flan-t5-xl"):
        load_t5_encoder(folder)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_unrelated_file_is_refused(tmp_path: Path, tokenizer_dir: Path, suffix: str) -> None:
    path = tmp_path / f"clip_l{suffix}"
    state_dict = nn.Linear(4, 3).state_dict()
    save_file(state_dict, path) if suffix == ".safetensors" else torch.save(state_dict, path)
    with pytest.raises(CheckpointError) as err:
        load_t5_encoder(path, tokenizer_dirs=[tokenizer_dir])
    message = one_line(err)
    assert "not a T5 encoder" in message and "google/flan-t5-xl" in message
    assert re.search(r"its keys: (weight, bias|bias, weight)\)", message)


def test_misshaped_tensor_is_named(tmp_path: Path, tokenizer_dir: Path) -> None:
    state_dict = t5_encoder_state_dict()
    state_dict["encoder.block.1.layer.0.SelfAttention.o.weight"] = torch.zeros(32, 16)
    path = write_t5_encoder_file(tmp_path / "t5.safetensors", COMFY_PREFIX, state_dict=state_dict)
    with pytest.raises(CheckpointError) as err:
        load_t5_encoder(path, tokenizer_dirs=[tokenizer_dir])
    assert "mis-shaped" in one_line(err)
    assert "encoder.block.1.layer.0.SelfAttention.o.weight: file (32, 16) vs model (32, 32)" in str(err.value)


def test_missing_tensor_is_named(tmp_path: Path, tokenizer_dir: Path) -> None:
    state_dict = t5_encoder_state_dict()
    del state_dict["encoder.final_layer_norm.weight"]
    path = write_t5_encoder_file(tmp_path / "t5.safetensors", state_dict=state_dict)
    with pytest.raises(CheckpointError) as err:
        load_t5_encoder(path, tokenizer_dirs=[tokenizer_dir])
    assert "1 missing" in one_line(err) and "encoder.final_layer_norm.weight" in str(err.value)


def test_no_tokenizer_lists_every_folder_tried(tmp_path: Path) -> None:
    folder = write_t5_folder(tmp_path / "flan-t5-xl", full_model=True, tokenizer=False)
    empty = tmp_path / "t5_tokenizer"
    empty.mkdir()
    with pytest.raises(CheckpointError) as err:
        load_t5_encoder(folder, tokenizer_dirs=[tmp_path / "absent", empty])
    message = one_line(err)
    assert "no usable T5 tokenizer" in message and "comfy/text_encoders/t5_tokenizer" in message
    assert all(str(tried) in message for tried in (folder, tmp_path / "absent", empty))


def test_file_without_tokenizer_dirs(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no usable T5 tokenizer .tried: no folder was given"):
        load_t5_encoder(write_t5_encoder_file(tmp_path / "t5.safetensors"))


def test_tokenizer_larger_than_the_vocabulary(tmp_path: Path, tokenizer_dir: Path) -> None:
    state_dict = t5_encoder_state_dict()
    del state_dict["encoder.embed_tokens.weight"]
    state_dict["shared.weight"] = state_dict["shared.weight"][:20]  # an embedding of 20 rows
    path = write_t5_encoder_file(tmp_path / "t5.safetensors", state_dict=state_dict)
    with pytest.raises(CheckpointError, match="the tokenizer has 40 tokens but the encoder .* only 20"):
        load_t5_encoder(path, tokenizer_dirs=[tokenizer_dir])


# ---- 5. dtype -------------------------------------------------------------------------------------------------
def _load(layout: str, tmp_path: Path, tokenizer_dir: Path, full_folder: Path, dtype: torch.dtype) -> T5TextEncoder:
    path = full_folder if layout == "folder" else write_t5_encoder_file(tmp_path / "t5.safetensors", COMFY_PREFIX)
    return load_t5_encoder(path, tokenizer_dirs=[tokenizer_dir], dtype=dtype)


@pytest.mark.parametrize("layout", ["folder", "file"])
def test_bfloat16_encodes_in_float32(tmp_path: Path, tokenizer_dir: Path, full_folder: Path, layout: str) -> None:
    encoder = _load(layout, tmp_path, tokenizer_dir, full_folder, torch.bfloat16)
    assert encoder.model.shared.weight.dtype == torch.bfloat16  # (transformers 4.50 keeps ``wo`` in float32)
    hidden, _ = encoder.encode(PROMPTS, max_length=16)
    expected, _ = reference(PROMPTS, 16)
    assert hidden.dtype == torch.float32 and torch.isfinite(hidden).all()
    torch.testing.assert_close(hidden, expected, atol=0.15, rtol=0.05)  # bf16 rounding through two blocks
    assert not torch.equal(hidden, expected)


def test_file_in_bfloat16_is_all_bfloat16(tmp_path: Path, tokenizer_dir: Path, full_folder: Path) -> None:
    encoder = _load("file", tmp_path, tokenizer_dir, full_folder, torch.bfloat16)
    assert {p.dtype for p in encoder.model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize("layout", ["folder", "file"])
def test_float16_keeps_t5_overflow_guard(tmp_path: Path, tokenizer_dir: Path, full_folder: Path, layout: str) -> None:
    encoder = _load(layout, tmp_path, tokenizer_dir, full_folder, torch.float16)
    dtypes = {name: p.dtype for name, p in encoder.model.named_parameters()}
    assert {d for n, d in dtypes.items() if n.endswith(".wo.weight")} == {torch.float32}  # as from_pretrained keeps it
    assert {d for n, d in dtypes.items() if not n.endswith(".wo.weight")} == {torch.float16}
    hidden, _ = encoder.encode(PROMPTS, max_length=16)
    assert hidden.dtype == torch.float32 and torch.isfinite(hidden).all()
