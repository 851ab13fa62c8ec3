"""Tiny offline stand-ins for Flan-T5-XL: a T5 tokenizer folder, a random T5 with fixed weights, and its files.

The tokenizer folder has the layout ComfyUI ships in ``comfy/text_encoders/t5_tokenizer`` (``tokenizer.json``,
``tokenizer_config.json``, ``special_tokens_map.json``), written here with the ``tokenizers`` library: a Unigram
model with T5's special ids (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2), Metaspace pre-tokenizer and ``</s>`` appended.
The model files are written as Hugging Face and ComfyUI users have them, independently of the pack's loader.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import Unigram
from torch import Tensor
from transformers import T5Config, T5EncoderModel, T5ForConditionalGeneration

SPECIALS = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
WORDS = ["▁a", "▁cat", "▁dog", "▁red", "▁blue", "▁photo", "▁of", "▁the", "▁on", "▁grass"]
LETTERS = ["▁", *"abcdefghijklmnopqrstuvwxyz"]
PIECES = ["<pad>", "</s>", "<unk>", *WORDS, *LETTERS]  # 40 tokens
VOCAB_SIZE = 48  # the embedding is larger than the tokenizer, as Flan-T5's (32128 rows for 32100 tokens)
COMFY_PREFIX = "text_encoders.t5xxl.transformer."


def tokenizer_object(extra_words: Sequence[str] = ()) -> Tokenizer:
    """The raw ``tokenizers`` tokenizer: whole words are likelier than letters, so ``a cat`` is ``▁a ▁cat </s>``.

    ``extra_words`` (e.g. ``"▁Yes"``) are appended after the 40 standard pieces, so the standard ids never change.
    """
    scores = [(piece, 0.0) for piece in PIECES[:3]] + [(w, -2.0) for w in WORDS] + [(c, -5.0) for c in LETTERS]
    scores += [(w, -2.0) for w in extra_words]
    tokenizer = Tokenizer(Unigram(scores, unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    tokenizer.add_special_tokens(PIECES[:3])
    return tokenizer


def write_t5_tokenizer(folder: Path, extra_words: Sequence[str] = ()) -> Path:
    """A T5 tokenizer folder as ComfyUI ships it (no ``spiece.model``: the fast tokenizer needs none)."""
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer_object(extra_words).save(str(folder / "tokenizer.json"))
    config = {"tokenizer_class": "T5Tokenizer", "extra_ids": 0, "model_max_length": 512, "legacy": False, **SPECIALS}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIALS, indent=2))
    return folder


def t5_config() -> T5Config:
    """Flan-T5-XL's architecture (gated-GELU, relative position buckets, no tied LM head) at toy size."""
    return T5Config(
        vocab_size=VOCAB_SIZE, d_model=32, d_kv=8, num_heads=4, num_layers=2, d_ff=64, feed_forward_proj="gated-gelu",
        relative_attention_num_buckets=32, relative_attention_max_distance=128, layer_norm_epsilon=1e-6,
        tie_word_embeddings=False, decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
    )


def full_t5(seed: int = 0) -> T5ForConditionalGeneration:
    """A ``T5ForConditionalGeneration`` whose every parameter is drawn from ``seed`` (the global RNG is untouched)."""
    model = T5ForConditionalGeneration(t5_config()).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in sorted(model.named_parameters()):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    return model


def t5_encoder_state_dict(seed: int = 0) -> dict[str, Tensor]:
    """The encoder part of :func:`full_t5` in ``T5EncoderModel`` names (``shared`` and ``encoder.*``), untied copies."""
    return {
        name: value.clone()
        for name, value in full_t5(seed).state_dict().items()
        if name.startswith(("shared.", "encoder."))
    }


def reference_encoder(seed: int = 0) -> T5EncoderModel:
    """``T5EncoderModel`` holding :func:`full_t5`'s encoder: the direct computation the loader must reproduce."""
    model = T5EncoderModel(t5_config()).eval()
    model.load_state_dict(t5_encoder_state_dict(seed), strict=True)
    return model


def write_t5_folder(folder: Path, full_model: bool, *, tokenizer: bool = True, seed: int = 0) -> Path:
    """A Hugging Face folder (``config.json`` + ``model.safetensors``), full model or encoder only, + tokenizer."""
    model = full_t5(seed) if full_model else reference_encoder(seed)
    model.save_pretrained(folder)
    if tokenizer:
        write_t5_tokenizer(folder)
    return folder


def write_t5_encoder_file(
    path: Path, prefix: str = "", *, state_dict: dict[str, Tensor] | None = None, seed: int = 0
) -> Path:
    """One weights file (``.safetensors`` or a pickle by suffix) of encoder tensors, every name after ``prefix``."""
    tensors = t5_encoder_state_dict(seed) if state_dict is None else state_dict
    tensors = {prefix + name: value.contiguous() for name, value in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        save_file(tensors, str(path))
    else:
        torch.save(tensors, path)
    return path
