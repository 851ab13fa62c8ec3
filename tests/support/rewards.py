"""Tiny offline stand-ins for the reward models, written in the official layouts with stock transformers classes.

- CLIP-FlanT5 (``zhiqiulin/clip-flant5-xl`` layout): ``config.json`` of ``model_type`` clip_t5, one checkpoint
  holding the T5 names unprefixed (``lm_head`` separate from ``shared``), ``vision_tower.vision_tower.*`` and
  ``mm_projector.{0,2}.*``, and a T5 tokenizer; as one ``.bin``, one ``.safetensors`` or ``.bin`` shards + index.
- CLIP (``openai/clip-vit-large-patch14`` layout): ``CLIPModel.save_pretrained`` + a byte-level CLIP BPE tokenizer
  (``vocab.json`` + ``merges.txt``); the LAION aesthetic head ``layers.{0,2,4,6,7}`` as a ``.pth``.
- GroundingDINO (``IDEA-Research/grounding-dino-base`` layout) with a BERT ``vocab.txt``, and SAM
  (``facebook/sam-vit-base`` layout): ``save_pretrained`` of the tiny configs the rewards research note verified.

Every parameter is drawn from a seeded generator, so a test can rebuild the same modules as its reference.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from support.t5 import t5_config, write_t5_tokenizer
from torch import Tensor, nn
from transformers import (
    BertConfig,
    CLIPConfig,
    CLIPModel,
    CLIPVisionConfig,
    CLIPVisionModel,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    SamConfig,
    SamMaskDecoderConfig,
    SamModel,
    SamPromptEncoderConfig,
    SamVisionConfig,
    SwinConfig,
    T5ForConditionalGeneration,
)

YES_WORDS = ("▁Yes",)  # so the answer tokenizes as [▁Yes, </s>], as with FLAN-T5's vocabulary
VISION_WIDTH = 64  # one 64-wide head, the CLIP convention the loader relies on
CLIP_T5_IMAGE = 28  # 2 x 2 patches of 14 px: 4 image tokens


def randomize(module: nn.Module, seed: int, scale: float = 0.3) -> nn.Module:
    """Every parameter of ``module`` drawn from ``seed`` (the global RNG is untouched); eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, parameter in sorted(module.named_parameters()):
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return module.eval()


# ---- CLIP-FlanT5 --------------------------------------------------------------------------------------------
def clip_t5_parts(seed: int = 0) -> tuple[T5ForConditionalGeneration, CLIPVisionModel, nn.Sequential]:
    """The three stock modules of a tiny CLIP-FlanT5; ``lm_head`` is its own parameter, unlike ``shared``."""
    t5 = T5ForConditionalGeneration(t5_config())
    t5.lm_head.weight = nn.Parameter(torch.empty_like(t5.lm_head.weight))  # transformers 5 tied it to shared
    vision = CLIPVisionModel(CLIPVisionConfig(
        hidden_size=VISION_WIDTH, intermediate_size=96, num_hidden_layers=3, num_attention_heads=1,
        image_size=CLIP_T5_IMAGE, patch_size=14, hidden_act="quick_gelu"))
    projector = nn.Sequential(nn.Linear(VISION_WIDTH, 32), nn.GELU(), nn.Linear(32, 32))
    return randomize(t5, seed), randomize(vision, seed + 1, 0.1), randomize(projector, seed + 2)


def clip_t5_state_dict(seed: int = 0) -> dict[str, Tensor]:
    """The official checkpoint's names: T5 unprefixed (+ the ``embed_tokens`` alias), vision tower, projector."""
    t5, vision, projector = clip_t5_parts(seed)
    state_dict = {name: value.clone() for name, value in t5.state_dict().items()}
    state_dict["embed_tokens.weight"] = state_dict["shared.weight"]
    root = lambda name: name if name.startswith("vision_model.") else f"vision_model.{name}"  # noqa: E731 - 5.x
    state_dict.update({f"vision_tower.vision_tower.{root(k)}": v for k, v in vision.state_dict().items()})
    state_dict.update({f"mm_projector.{k}": v for k, v in projector.state_dict().items()})
    return state_dict


def clip_t5_config() -> dict:
    """``config.json`` as the release has it: T5 fields, ``model_type`` clip_t5 and the ``mm_*`` settings."""
    t5 = t5_config().to_dict()
    fields = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
              "relative_attention_num_buckets", "relative_attention_max_distance", "layer_norm_epsilon",
              "feed_forward_proj", "decoder_start_token_id", "pad_token_id", "eos_token_id", "dropout_rate")
    return {
        "architectures": ["CLIPT5ForConditionalGeneration"], "model_type": "clip_t5",
        **{name: t5[name] for name in fields}, "tie_word_embeddings": False, "image_aspect_ratio": "pad",
        "mm_vision_tower": "openai/clip-vit-large-patch14-336", "mm_hidden_size": VISION_WIDTH,
        "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "use_mm_proj": True,
    }


def write_clip_t5_folder(folder: Path, layout: str = "bin", *, seed: int = 0, tokenizer: bool = True) -> Path:
    """A CLIP-FlanT5 folder: ``bin`` (one pickle, aliases and a saved ``position_ids`` buffer included, as the
    release), ``safetensors`` (aliases dropped, as the hub's conversion) or ``sharded`` (two ``.bin`` + index)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(clip_t5_config(), indent=1))
    state_dict = clip_t5_state_dict(seed)
    if layout == "bin":
        positions = state_dict["vision_tower.vision_tower.vision_model.embeddings.position_embedding.weight"]
        state_dict["vision_tower.vision_tower.vision_model.embeddings.position_ids"] = torch.arange(
            positions.shape[0])[None]
        torch.save(state_dict, folder / "pytorch_model.bin")
    elif layout == "safetensors":
        aliases = ("embed_tokens.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight")
        save_file({k: v.contiguous() for k, v in state_dict.items() if k not in aliases}, folder / "model.safetensors")
    else:
        names = sorted(state_dict)
        shards = {"pytorch_model-00001-of-00002.bin": names[::2], "pytorch_model-00002-of-00002.bin": names[1::2]}
        for shard, keys in shards.items():
            torch.save({k: state_dict[k] for k in keys}, folder / shard)
        weight_map = {k: shard for shard, keys in shards.items() for k in keys}
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    if tokenizer:
        write_t5_tokenizer(folder, YES_WORDS)
    return folder


# ---- CLIP (CLIP score, PickScore, aesthetic) ------------------------------------------------------------------
CLIP_WORDS = ("a", "cat", "dog", "red", "blue", "photo", "of", "the")


def clip_config() -> CLIPConfig:
    """A tiny ``CLIPModel`` (the research note's config): 32-wide towers, 32 px images in 8 px patches, 16-d output."""
    return CLIPConfig(
        text_config=dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )


def write_clip_tokenizer(folder: Path) -> Path:
    """A CLIP BPE tokenizer (``vocab.json`` + ``merges.txt``): start/end tokens 0/1, letters, word-final letters and
    a few whole words, so ``a cat`` is ``<|startoftext|> a</w> cat</w> <|endoftext|>``."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters)]
    merges = []
    for word in CLIP_WORDS:  # merge the letters left to right: c a t</w> -> ca t</w> -> cat</w>
        piece = word[0]
        for i, char in enumerate(word[1:], 1):
            nxt = char + ("</w>" if i == len(word) - 1 else "")
            merges.append(f"{piece} {nxt}")
            piece += nxt
            vocab.append(piece)
    vocab = list(dict.fromkeys(vocab))
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(dict.fromkeys(merges)) + "\n")
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>"}
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, **specials}))
    return folder


def clip_model(seed: int = 0) -> CLIPModel:
    return randomize(CLIPModel(clip_config()), seed, 0.2)


def write_clip_folder(folder: Path, *, seed: int = 0, tokenizer: bool = True) -> Path:
    """A ``CLIPModel`` folder (``save_pretrained``: config.json + model.safetensors) with or without a tokenizer."""
    clip_model(seed).save_pretrained(folder)
    if tokenizer:
        write_clip_tokenizer(folder)
    return folder


def aesthetic_head_state_dict(width: int = 16, seed: int = 0) -> dict[str, Tensor]:
    """The LAION head's keys ``layers.{0,2,4,6,7}`` at toy widths ``width -> 24 -> 12 -> 8 -> 4 -> 1``."""
    widths = (width, 24, 12, 8, 4, 1)
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    for index, (fan_in, fan_out) in zip((0, 2, 4, 6, 7), zip(widths[:-1], widths[1:])):
        state_dict[f"layers.{index}.weight"] = torch.randn(fan_out, fan_in, generator=generator) * 0.5
        state_dict[f"layers.{index}.bias"] = torch.randn(fan_out, generator=generator) * 0.5
    return state_dict


# ---- GroundingDINO and SAM --------------------------------------------------------------------------------------
BERT_VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "balloons", "bears", "cat", "dog", "red",
              "##s", "a", "b", "c", "d", "e", "o", "r", "t")
DETECTOR_EDGES = {"shortest_edge": 96, "longest_edge": 160}


def grounding_dino(seed: int = 0) -> GroundingDinoForObjectDetection:
    """The research note's tiny GroundingDINO (Swin 16-wide, BERT 1 layer, 20 queries, 32 text positions)."""
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(image_size=128, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1],
                                   num_heads=[1, 1, 2, 2], window_size=4, out_features=["stage2", "stage3", "stage4"]),
        text_config=BertConfig(vocab_size=len(BERT_VOCAB), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=37, max_position_embeddings=64),
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_queries=20, num_feature_levels=4,
        encoder_n_points=2, decoder_n_points=2, max_text_len=32, dropout=0.0, fusion_droppath=0.0,
    )
    with torch.random.fork_rng():  # its initialisation draws from the global RNG: seed it without side effects
        torch.manual_seed(seed)
        return GroundingDinoForObjectDetection(config).eval()


def write_grounding_dino_folder(folder: Path, *, seed: int = 0) -> Path:
    """``save_pretrained``, a BERT ``vocab.txt`` tokenizer (lower-cased) and ``preprocessor_config.json``, as
    ``grounding-dino-base`` ships them."""
    grounding_dino(seed).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    (folder / "preprocessor_config.json").write_text(json.dumps(  # the release: 800 / 1333; tiny images here
        {"image_processor_type": "GroundingDinoImageProcessor", "size": DETECTOR_EDGES}))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True, "model_max_length": 512}))
    return folder


def sam_config() -> SamConfig:
    """The research note's tiny SAM: 64 px input, 16 px patches, 16 x 16 low-resolution masks."""
    return SamConfig(
        vision_config=SamVisionConfig(hidden_size=32, output_channels=16, num_hidden_layers=2, num_attention_heads=2,
                                      image_size=64, patch_size=16, mlp_dim=64, global_attn_indexes=[1], window_size=2,
                                      num_pos_feats=8),
        prompt_encoder_config=SamPromptEncoderConfig(hidden_size=16, image_size=64, patch_size=16,
                                                     mask_input_channels=4),
        mask_decoder_config=SamMaskDecoderConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
                                                 iou_head_hidden_dim=16),
    )


def write_sam_folder(folder: Path, *, seed: int = 0) -> Path:
    randomize(SamModel(sam_config()), seed, 0.2).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", autouse=False)
def one_thread() -> Iterator[None]:
    """Tiny models on one thread: on a busy 2-core machine thread hand-offs cost more than the arithmetic."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def smooth_images(batch: int, height: int, width: int, seed: int = 0) -> Tensor:
    """IMAGE-layout ``[B, H, W, 3]`` test images in 0..1 without pixel-level noise (so resamplers agree closely)."""
    coarse = torch.rand(batch, 3, 4, 5, generator=torch.Generator().manual_seed(seed))
    return F.interpolate(coarse, (height, width), mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
