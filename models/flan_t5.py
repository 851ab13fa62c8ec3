"""The Flan-T5-XL text encoder of PixelFlow text-to-image: loading it from the user's files, and encoding prompts.

Official usage (ShoufaChen/PixelFlow): ``app.py:41-42`` builds ``T5EncoderModel.from_pretrained("google/flan-t5-xl")``
and ``AutoTokenizer.from_pretrained("google/flan-t5-xl")``, with ``max_token_length=512`` (``app.py:55``).
``pixelflow/pipeline_pixelflow.py`` ``encode_prompt`` (lines 33-133) runs with CUDA autocast disabled, so in fp32;
it tokenizes with ``padding="max_length"``, ``max_length=512``, ``truncation=True`` and passes the attention mask to
the encoder (``use_attention_mask=True`` at the call, line 183); the negative prompt ``""`` is tokenized the same way.
The conditioning is ``last_hidden_state`` [B, 512, 2048] with its mask [B, 512].

The weights come either as the Hugging Face folder (full ``T5ForConditionalGeneration`` or encoder only) or as one
file of encoder weights in Hugging Face names, as ComfyUI users keep them in ``models/text_encoders`` (possibly under a
prefix such as ``text_encoders.t5xxl.transformer.``). A single file carries no config, so the ``T5Config`` is read
from the tensor shapes, and no tokenizer, so one is taken from a folder (ComfyUI ships ``comfy/text_encoders/
t5_tokenizer``, the same sentencepiece vocabulary as Flan-T5).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from transformers import PreTrainedTokenizerBase, T5Config, T5EncoderModel

from .checkpoint import CheckpointError, load_strict, preview_names, read_checkpoint
from .families import identify, is_state_dict
from .hf_folder import from_pretrained_strict, load_tokenizer, read_hf_config

TOKENIZER_FILES = ("tokenizer.json", "spiece.model")
EXPECTED = (
    "PixelFlow text-to-image needs the Flan-T5-XL encoder: the google/flan-t5-xl folder from Hugging Face, "
    "or an encoder-only .safetensors of it"
)
WHERE_TOKENIZER = (
    "the tokenizer files of google/flan-t5-xl (tokenizer.json, tokenizer_config.json, special_tokens_map.json), "
    "or ComfyUI's comfy/text_encoders/t5_tokenizer folder"
)
ANCHOR = "encoder.block.0.layer.0.SelfAttention.q.weight"  # present in every T5 encoder, whatever the prefix
BLOCK0 = "encoder.block.0.layer"
RELATIVE_BIAS = f"{BLOCK0}.0.SelfAttention.relative_attention_bias.weight"
EMBEDDINGS = ("shared.weight", "encoder.embed_tokens.weight")  # files hold one or both; the same tensor
DROPPED_PREFIXES = ("decoder.", "lm_head.")  # the rest of a full T5ForConditionalGeneration


@dataclass
class T5TextEncoder:
    """A T5 encoder (the ``nn.Module`` the node layer wraps in ComfyUI's ModelPatcher) and its tokenizer."""

    model: T5EncoderModel
    tokenizer: PreTrainedTokenizerBase

    @property
    def hidden_size(self) -> int:
        """``d_model``: 2048 for Flan-T5-XL, which must equal the PixelFlow model's ``cross_attention_dim``."""
        return self.model.config.d_model

    @property
    def device(self) -> torch.device:
        """Where the weights are now (ComfyUI's model management may have moved them)."""
        return self.model.shared.weight.device

    @torch.no_grad()
    @torch.autocast("cuda", enabled=False)  # as ``encode_prompt``: T5 in its own dtype even inside a bf16 autocast
    def encode(
        self, prompts: Sequence[str], *, max_length: int = 512, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """Encode prompts as ``encode_prompt`` does: padded to ``max_length``, truncated, masked, CUDA autocast off.

        ``device`` is where the model runs (default: where its weights are). Returns the hidden states in float32,
        (B, max_length, d_model), and the attention mask as int64, (B, max_length): 1 on real tokens incl. ``</s>``.
        """
        device = self.device if device is None else torch.device(device)
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        tokens = self.tokenizer(
            batch, padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
            return_tensors="pt",
        )
        ids = tokens["input_ids"].to(device)  # (B, L)
        mask = tokens["attention_mask"].to(device=device, dtype=torch.int64)  # (B, L)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state  # (B, L, d_model)
        return hidden.float(), mask


def load_t5_encoder(
    path: str | Path,
    *,
    tokenizer_dirs: Sequence[str | Path] = (),
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> T5TextEncoder:
    """Load a T5 encoder from a Hugging Face folder or a single weights file, and its tokenizer.

    The tokenizer comes from the folder itself when it holds one, else from the first usable of ``tokenizer_dirs``.
    It is loaded first so that a missing tokenizer is reported before gigabytes of weights are read.
    """
    path = Path(path)
    if path.is_dir():
        tokenizer = _load_tokenizer([path, *map(Path, tokenizer_dirs)])
        model = _load_folder(path, dtype)
    elif path.is_file():
        tokenizer = _load_tokenizer([Path(folder) for folder in tokenizer_dirs])
        model = _load_file(path, dtype)
    else:
        raise CheckpointError(f"Flan-T5 encoder not found: {path}; {EXPECTED}")
    if len(tokenizer) > model.config.vocab_size:
        raise CheckpointError(
            f"the tokenizer has {len(tokenizer)} tokens but the encoder in {path} only {model.config.vocab_size}: "
            f"they do not belong together; use {WHERE_TOKENIZER}"
        )
    return T5TextEncoder(model.to(device).eval(), tokenizer)


def _load_tokenizer(folders: Sequence[Path]) -> PreTrainedTokenizerBase:
    """The first folder's tokenizer that loads (``AutoTokenizer``, as app.py); every failure is named if none does."""
    return load_tokenizer(folders, files=TOKENIZER_FILES, title="T5", where=WHERE_TOKENIZER)


def _load_folder(folder: Path, dtype: torch.dtype) -> T5EncoderModel:
    """``T5EncoderModel.from_pretrained`` (decoder weights of a full model are skipped), refusing a partial load."""
    read_hf_config(folder, model_types=("t5",), title="T5", expected=EXPECTED)
    return from_pretrained_strict(T5EncoderModel, folder, dtype=dtype, title="T5 encoder")


def _load_file(path: Path, dtype: torch.dtype) -> T5EncoderModel:
    """Build ``T5EncoderModel`` from the file's shapes on the meta device and load the file into it strictly."""
    found = _encoder_state_dict(read_checkpoint(path), source=path)
    state_dict = {name: value.to(_load_dtype(name, dtype)) for name, value in found.items()}
    config = _infer_config(state_dict, source=path)
    with torch.device("meta"):  # no random init of a billion parameters that are overwritten anyway
        model = T5EncoderModel(config)
    state_dict["encoder.embed_tokens.weight"] = state_dict["shared.weight"]  # tied in T5EncoderModel
    load_strict(model, state_dict, source=str(path))
    model.set_input_embeddings(model.shared)  # re-tie: an ``assign`` load gave each name its own Parameter
    return model


def _load_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
    """``dtype``, except float32 for the modules T5 keeps in float32 under float16 (``wo``: its output overflows).

    ``from_pretrained`` does the same with ``T5EncoderModel._keep_in_fp32_modules`` (transformers 4.57 and 5.x;
    4.50 kept them in float32 under bfloat16 too), so both layouts give the same model.
    """
    keep = set(getattr(T5EncoderModel, "_keep_in_fp32_modules", None) or ())
    return torch.float32 if dtype == torch.float16 and keep.intersection(name.split(".")) else dtype


def _encoder_state_dict(obj: object, *, source: Path) -> dict[str, Tensor]:
    """The encoder's tensors in ``T5EncoderModel`` names, prefix removed, decoder dropped, embedding as ``shared``."""
    if not is_state_dict(obj):
        raise CheckpointError(f"{source} holds a {type(obj).__name__}, not a state dict of a T5 encoder; {EXPECTED}")
    prefix = _prefix(obj, source=source)
    state_dict = {
        name[len(prefix):]: value
        for name, value in obj.items()
        if name.startswith(prefix) and not name[len(prefix):].startswith(DROPPED_PREFIXES)
    }
    embeddings = [state_dict.pop(name) for name in EMBEDDINGS if name in state_dict]  # either is enough
    if not embeddings:
        raise CheckpointError(f"{source}: the T5 encoder has no token embedding ({' or '.join(EMBEDDINGS)})")
    return {**state_dict, "shared.weight": embeddings[0]}


def _prefix(state_dict: Mapping[str, Tensor], *, source: Path) -> str:
    """What stands before ``encoder.`` in the file's names (e.g. ComfyUI's ``text_encoders.t5xxl.transformer.``)."""
    for name in state_dict:
        if name == ANCHOR or name.endswith(f".{ANCHOR}"):
            return name[: -len(ANCHOR)]
    family = identify(state_dict)
    hint = f"; it looks like a {family.title} checkpoint: load it with {family.loader}" if family else ""
    raise CheckpointError(
        f"{source} is not a T5 encoder: no key ends in {ANCHOR!r} (its keys: {preview_names(list(state_dict))}); "
        f"{EXPECTED}{hint}"
    )


def _infer_config(state_dict: Mapping[str, Tensor], *, source: Path) -> T5Config:
    """Every ``T5Config`` field the encoder uses, from the tensor shapes (Flan-T5-XL: 2048, 64x32 heads, 24, 5120)."""

    def shape(name: str) -> torch.Size:
        if name not in state_dict:
            raise CheckpointError(f"{source}: the T5 encoder key {name!r} is missing")
        return state_dict[name].shape

    vocab_size, d_model = shape("shared.weight")  # (vocab, d_model)
    num_buckets, num_heads = shape(RELATIVE_BIAS)  # (buckets, heads)
    inner_dim = shape(ANCHOR)[0]  # q: (heads * d_kv, d_model)
    gated = f"{BLOCK0}.1.DenseReluDense.wi_0.weight" in state_dict
    d_ff = shape(f"{BLOCK0}.1.DenseReluDense.{'wi_0' if gated else 'wi'}.weight")[0]  # (d_ff, d_model)
    blocks = {int(m.group(1)) for name in state_dict if (m := re.match(r"encoder\.block\.(\d+)\.", name))}
    if inner_dim % num_heads:
        raise CheckpointError(f"{source}: q projection width {inner_dim} is not a multiple of {num_heads} heads")
    return T5Config(
        vocab_size=vocab_size, d_model=d_model, d_kv=inner_dim // num_heads, d_ff=d_ff, num_layers=max(blocks) + 1,
        num_heads=num_heads, relative_attention_num_buckets=num_buckets, relative_attention_max_distance=128,
        layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu" if gated else "relu", is_encoder_decoder=False,
        use_cache=False, tie_word_embeddings=False,
    )
