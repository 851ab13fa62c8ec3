"""CLIP-FlanT5, the VQAScore model (Lin et al., "Evaluating Text-to-Visual Generation with Image-to-Text
Generation", ECCV 2024), rebuilt from stock transformers classes and loaded from the released folders
``zhiqiulin/clip-flant5-xl`` / ``-xxl``.

The official class (t2v_metrics ``models/vqascore_models/clip_t5/model/language_model/clip_t5.py``) *is* a
``T5ForConditionalGeneration`` with two extra attributes, so its checkpoint holds the T5 names unprefixed plus
``vision_tower.vision_tower.vision_model.*`` (a ``CLIPVisionModel``, ViT-L/14 at 336 px) and ``mm_projector.{0,2}.*``
(``mlp2x_gelu``: Linear, exact GELU, Linear). Image features are the penultimate vision layer without the CLS token
(``clip_encoder.py``: ``hidden_states[-2][:, 1:]``), projected to ``d_model`` and spliced into the encoder input at
the ``<image>`` placeholder (id -200).

``config.json`` (``model_type`` ``clip_t5``) carries the T5 fields and the ``mm_*`` settings but not the vision
tower's config (the official code fetched ``openai/clip-vit-large-patch14-336`` at load time); it is read here from
the tensor shapes, with OpenAI CLIP's 64-wide attention heads.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import CLIPVisionConfig, CLIPVisionModel, T5Config, T5ForConditionalGeneration

from ..checkpoint import CheckpointError, cast_floating, load_strict, preview_names
from . import module_device, module_dtype

IMAGE_TOKEN = -200  # t2v_metrics constants.IMAGE_TOKEN_INDEX
VISION_PREFIX = "vision_tower.vision_tower."
PROJECTOR_PREFIX = "mm_projector."
CLIP_ROOT = "vision_model."  # the vision transformer inside CLIPVisionModel in the checkpoint's names
EMBEDDING_NAMES = ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
                   "embed_tokens.weight")  # one tensor: .bin files repeat it under every alias, safetensors keep one
CLIP_HEAD_DIM = 64  # every OpenAI CLIP ViT (ViT-L/14-336: 1024 wide, 16 heads)
T5_FIELDS = ("d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers", "num_heads",
             "relative_attention_num_buckets", "relative_attention_max_distance", "layer_norm_epsilon",
             "feed_forward_proj", "decoder_start_token_id", "pad_token_id", "eos_token_id")


class CLIPFlanT5(nn.Module):
    """The three parts of CLIP-FlanT5 under one module, so ComfyUI loads and offloads them together."""

    def __init__(self, language_model: T5ForConditionalGeneration, vision_tower: CLIPVisionModel,
                 mm_projector: nn.Sequential, *, select_layer: int = -2, keep_cls: bool = False) -> None:
        super().__init__()
        self.language_model = language_model
        self.vision_tower = vision_tower
        self.mm_projector = mm_projector
        self.select_layer = select_layer
        self.keep_cls = keep_cls

    def encode_images(self, pixels: Tensor) -> Tensor:
        """CLIP pixels ``(B, 3, S, S)`` -> image tokens ``(B, N, d_model)`` (N = 576 at 336 px)."""
        vision = self.vision_tower(pixels.to(module_device(self), module_dtype(self.vision_tower)),
                                   output_hidden_states=True)
        features = vision.hidden_states[self.select_layer]  # (B, 1 + N, hidden), before post_layernorm
        features = features if self.keep_cls else features[:, 1:]
        return self.mm_projector(features.to(module_dtype(self.mm_projector)))  # (B, N, d_model)

    def forward(self, question_ids: Tensor, pixels: Tensor, answer_ids: Tensor) -> Tensor:
        """Decoder logits ``(B, A, vocab)`` for the answer ``(A,)`` given each image and the question ``(L,)``
        holding one :data:`IMAGE_TOKEN`; teacher forcing with the answer shifted right, as T5 does with labels."""
        device = module_device(self)
        question_ids, answer_ids = question_ids.to(device), answer_ids.to(device)
        image_tokens = self.encode_images(pixels)  # (B, N, d)
        batch = image_tokens.shape[0]
        (slot,) = (question_ids == IMAGE_TOKEN).nonzero()[:, 0].tolist()
        embed = self.language_model.get_input_embeddings()
        before = embed(question_ids[:slot]).expand(batch, -1, -1)  # (B, slot, d)
        after = embed(question_ids[slot + 1:]).expand(batch, -1, -1)  # (B, L - slot - 1, d)
        inputs = torch.cat([before, image_tokens.to(before.dtype), after], dim=1)  # (B, L - 1 + N, d)
        start = torch.tensor([self.language_model.config.decoder_start_token_id], device=device)
        decoder_ids = torch.cat([start, answer_ids[:-1]]).expand(batch, -1)  # (B, A)
        mask = torch.ones(inputs.shape[:2], dtype=torch.long, device=device)  # one image: no padding
        return self.language_model(inputs_embeds=inputs, attention_mask=mask, decoder_input_ids=decoder_ids,
                                   use_cache=False).logits  # (B, A, vocab)


def build_clip_flan_t5(config: Mapping, state_dict: Mapping[str, Tensor], *, source: Path,
                       dtype: torch.dtype) -> CLIPFlanT5:
    """CLIP-FlanT5 from its ``config.json`` and its checkpoint tensors, every part loaded strictly.

    The modules are built on the meta device and receive the file's tensors (no second copy of 3 or 11 billion
    parameters). transformers 5 forces ``tie_word_embeddings=True`` for T5 and ties ``lm_head`` to the shared
    embedding; FLAN-T5's head is separate, so ``tie_word_embeddings=False`` is passed (which 5.x turns into
    ``scale_decoder_outputs=False``, as FLAN-T5 needs) and the assigning load gives ``lm_head`` its own tensor.
    """
    state_dict = cast_floating(state_dict, dtype)
    vision_sd = {k[len(VISION_PREFIX):]: v for k, v in state_dict.items()
                 if k.startswith(VISION_PREFIX) and not k.endswith("position_ids")}  # a buffer some versions saved
    projector_sd = {k[len(PROJECTOR_PREFIX):]: v for k, v in state_dict.items() if k.startswith(PROJECTOR_PREFIX)}
    t5_sd = _t5_state_dict(state_dict, source=source)
    if not vision_sd or not projector_sd:
        raise CheckpointError(
            f"{source} is not a CLIP-FlanT5 checkpoint: no {VISION_PREFIX}* or {PROJECTOR_PREFIX}* weights "
            f"(its keys: {preview_names(sorted(state_dict))})"
        )
    with torch.device("meta"):
        language_model = T5ForConditionalGeneration(_t5_config(config, t5_sd, source=source))
        vision_tower = CLIPVisionModel(_vision_config(vision_sd, source=source))
        projector = _projector(config, projector_sd, source=source)
    load_strict(language_model, t5_sd, source=f"{source} (T5 part)")
    language_model.set_input_embeddings(language_model.shared)  # one embedding module again after the assign
    load_strict(vision_tower, _module_names(vision_sd, vision_tower), source=f"{source} ({VISION_PREFIX}*)")
    _restore_position_ids(vision_tower)
    load_strict(projector, projector_sd, source=f"{source} ({PROJECTOR_PREFIX}*)")
    keep_cls = config.get("mm_vision_select_feature", "patch") == "cls_patch"
    return CLIPFlanT5(language_model, vision_tower, projector,
                      select_layer=int(config.get("mm_vision_select_layer", -2)), keep_cls=keep_cls).eval()


def _t5_state_dict(state_dict: Mapping[str, Tensor], *, source: Path) -> dict[str, Tensor]:
    """The T5 tensors in ``T5ForConditionalGeneration`` names, the shared embedding under each of its names."""
    t5_sd = {k: v for k, v in state_dict.items()
             if not k.startswith((VISION_PREFIX, PROJECTOR_PREFIX)) and k not in EMBEDDING_NAMES}
    embedding = next((state_dict[name] for name in EMBEDDING_NAMES if name in state_dict), None)
    if embedding is None or "lm_head.weight" not in state_dict:
        raise CheckpointError(f"{source}: the T5 part needs shared.weight and lm_head.weight (its keys: "
                              f"{preview_names(sorted(state_dict))})")
    return {**t5_sd, **dict.fromkeys(EMBEDDING_NAMES[:3], embedding)}


def _t5_config(config: Mapping, t5_sd: Mapping[str, Tensor], *, source: Path) -> T5Config:
    """The T5 fields of ``config.json``; the vocabulary size from the embedding (t2v_metrics resized it to the
    tokenizer when it saved the model, so the shape is what the file really holds)."""
    missing = [name for name in ("d_model", "num_layers", "num_heads") if name not in config]
    if missing:
        raise CheckpointError(f"{source}: config.json lacks the T5 fields {', '.join(missing)}")
    fields = {name: config[name] for name in T5_FIELDS if name in config}
    return T5Config(**fields, vocab_size=t5_sd["shared.weight"].shape[0], tie_word_embeddings=False,
                    use_cache=False)


def _vision_config(vision_sd: Mapping[str, Tensor], *, source: Path) -> CLIPVisionConfig:
    """The CLIP vision tower's config from its shapes (ViT-L/14-336: 1024 wide, 24 layers, 4096 MLP, 336 px)."""
    try:
        hidden, _, patch, _ = vision_sd["vision_model.embeddings.patch_embedding.weight"].shape  # (D, 3, p, p)
        positions = vision_sd["vision_model.embeddings.position_embedding.weight"].shape[0]  # 1 + (S / p)^2
        mlp = vision_sd["vision_model.encoder.layers.0.mlp.fc1.weight"].shape[0]  # (4D, D)
    except KeyError as err:
        raise CheckpointError(f"{source}: the vision tower lacks {err.args[0]!r}") from None
    layers = {int(m.group(1)) for k in vision_sd if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k))}
    grid = round((positions - 1) ** 0.5)
    if grid * grid != positions - 1 or hidden % CLIP_HEAD_DIM:
        raise CheckpointError(f"{source}: vision tower of width {hidden} with {positions} positions is not a CLIP ViT")
    return CLIPVisionConfig(hidden_size=hidden, intermediate_size=mlp, num_hidden_layers=max(layers) + 1,
                            num_attention_heads=hidden // CLIP_HEAD_DIM, image_size=grid * patch, patch_size=patch,
                            hidden_act="quick_gelu", layer_norm_eps=1e-5)


def _projector(config: Mapping, projector_sd: Mapping[str, Tensor], *, source: Path) -> nn.Sequential:
    """``mm_projector`` of type ``mlp{n}x_gelu``: Linear, then (exact GELU, Linear) n - 1 times (t2v_metrics
    ``multimodal_projector/builder.py``; the releases use ``mlp2x_gelu``)."""
    kind = str(config.get("mm_projector_type", ""))
    match = re.fullmatch(r"mlp(\d+)x_gelu", kind)
    if match is None or "0.weight" not in projector_sd:
        raise CheckpointError(f"{source}: unsupported mm_projector_type {kind!r} (the releases use mlp2x_gelu)")
    width_in, width = projector_sd["0.weight"].shape[1], config["d_model"]
    layers: list[nn.Module] = [nn.Linear(width_in, width)]
    for _ in range(int(match.group(1)) - 1):
        layers += [nn.GELU(), nn.Linear(width, width)]
    return nn.Sequential(*layers)


def _module_names(vision_sd: Mapping[str, Tensor], vision_tower: CLIPVisionModel) -> dict[str, Tensor]:
    """The checkpoint's ``vision_model.*`` names (transformers 4.x's ``CLIPVisionModel``) as the installed class
    names them: transformers 5 holds the vision transformer's modules directly, without ``vision_model.``."""
    if any(name.startswith(CLIP_ROOT) for name in vision_tower.state_dict()):
        return dict(vision_sd)
    return {name.removeprefix(CLIP_ROOT): value for name, value in vision_sd.items()}


def _restore_position_ids(vision_tower: CLIPVisionModel) -> None:
    """Recreate the one non-persistent buffer the meta build left empty (``arange`` of the positions); refuse a
    model that would still hold meta tensors, e.g. after a transformers change added another such buffer."""
    embeddings = getattr(vision_tower, "vision_model", vision_tower).embeddings  # 4.x nests, 5.x does not
    count = embeddings.position_embedding.weight.shape[0]
    embeddings.register_buffer("position_ids", torch.arange(count).expand((1, -1)), persistent=False)
    leftover = [name for name, t in vision_tower.named_buffers() if t.is_meta]
    if leftover:
        raise CheckpointError(f"the CLIP vision tower has buffers this version cannot restore: {', '.join(leftover)}")
