"""A Hugging Face ``CLIPModel`` folder with its tokenizer, and the image and text embeddings the CLIP-based rewards
(CLIP score, PickScore, LAION aesthetic) compare, preprocessed as RBF feeds them.

RBF (``rbf/corrector/reward_model/pickscore.py`` and ``base.py`` ``AestheticRewardModel``) passes the decoded [0, 1]
tensor straight to ``torchvision.transforms.Resize(224)`` (shorter side, bilinear, antialiased by default) and the
CLIP normalisation, with no 8-bit step and no crop: its images are square. Here the shorter side goes to the
model's image size and the centre is cropped, which is the same for square images and keeps CLIP's input square
otherwise. Text is tokenized as the PickScore code does: padded, truncated to 77 tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import CLIPModel, PreTrainedTokenizerBase

from ..checkpoint import CheckpointError
from ..hf_folder import from_pretrained_strict, load_tokenizer, read_hf_config
from . import check_images, module_device, module_dtype
from .preprocess import CLIP_MEAN, CLIP_STD, center_crop, normalize, resize, shortest_side_size

TOKENIZER_FILES = ("tokenizer.json", "vocab.json")
MAX_TOKENS = 77  # CLIP's context length


class CLIPEmbedder:
    """A ``CLIPModel`` (the ``nn.Module`` to wrap) and its tokenizer (None when only images are embedded)."""

    def __init__(self, model: CLIPModel, tokenizer: PreTrainedTokenizerBase | None) -> None:
        self.model = model
        self.tokenizer = tokenizer

    @property
    def embedding_size(self) -> int:
        """``projection_dim``: 768 for ViT-L/14, 1024 for PickScore's ViT-H/14."""
        return self.model.config.projection_dim

    def preprocess(self, images: Tensor) -> Tensor:
        """IMAGE ``[B, H, W, C]`` -> normalised CLIP pixels ``(B, 3, S, S)`` on the model's device and dtype."""
        side = self.model.config.vision_config.image_size
        pixels = check_images(images.to(module_device(self.model)))  # (B, 3, H, W)
        pixels = center_crop(resize(pixels, shortest_side_size(*pixels.shape[-2:], side), "bilinear"), side)
        return normalize(pixels, CLIP_MEAN, CLIP_STD).to(module_dtype(self.model))

    def image_embeddings(self, images: Tensor) -> Tensor:
        """Unit-norm projected image embeddings ``(B, D)`` in float32."""
        features = _pooled(self.model.get_image_features(pixel_values=self.preprocess(images)))
        return F.normalize(features.float(), dim=-1)

    def text_embeddings(self, texts: Sequence[str]) -> Tensor:
        """Unit-norm projected text embeddings ``(N, D)`` in float32."""
        if self.tokenizer is None:
            raise ValueError("this CLIP model was loaded without a tokenizer, so it cannot embed text")
        tokens = self.tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS,
                                return_tensors="pt").to(module_device(self.model))
        features = _pooled(self.model.get_text_features(input_ids=tokens["input_ids"],
                                                        attention_mask=tokens["attention_mask"]))
        return F.normalize(features.float(), dim=-1)


def _pooled(output: Tensor | object) -> Tensor:
    """The projected features: transformers 4.x returns the tensor, 5.x a ``BaseModelOutputWithPooling`` holding it
    as ``pooler_output``."""
    return output if isinstance(output, Tensor) else output.pooler_output


def load_clip(
    folder: str | Path, *, title: str, where_to_get: str, tokenizer_dirs: Sequence[str | Path] = (),
    with_tokenizer: bool = True, dtype: torch.dtype = torch.float32,
) -> CLIPEmbedder:
    """A ``CLIPModel`` folder (``config.json`` of ``model_type`` clip) and, if wanted, a CLIP tokenizer from it or
    the first usable of ``tokenizer_dirs`` (every CLIP shares OpenAI's BPE vocabulary). ``title`` names the reward
    in errors, ``where_to_get`` the Hugging Face repository."""
    folder = Path(folder)
    expected = f"{title} needs a CLIP folder: {where_to_get}"
    if not folder.is_dir():
        raise CheckpointError(f"CLIP folder not found: {folder}; {expected}")
    read_hf_config(folder, model_types=("clip",), title="CLIP", expected=expected)
    tokenizer = None
    if with_tokenizer:
        tokenizer = load_tokenizer([folder, *map(Path, tokenizer_dirs)], files=TOKENIZER_FILES, title="CLIP",
                                   where=f"the tokenizer files (tokenizer.json or vocab.json + merges.txt) of "
                                         f"{where_to_get}, or of any CLIP folder")
    model = from_pretrained_strict(CLIPModel, folder, dtype=dtype, title="CLIP model")
    return CLIPEmbedder(model, tokenizer)
