"""CLIP score: the cosine similarity of CLIP's image and text embeddings (Hessel et al., "CLIPScore", EMNLP 2021,
without its 2.5 x max(., 0) rescaling), the "CLIP" column the RBF paper reports (about 0.27 for FLUX, v5 Tab. 3).

Also the computation behind PickScore (see :mod:`.pickscore`), which RBF scores the same way with another checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from . import require_text
from .clip_model import CLIPEmbedder, load_clip

WHERE_TO_GET = ("Hugging Face openai/clip-vit-large-patch14 (or another CLIP, e.g. openai/clip-vit-base-patch32; the "
                "whole folder) into ComfyUI/models/rewards")


class CLIPScore:
    """Cosine similarity of the unit-norm projected image and prompt embeddings, in [-1, 1]."""

    def __init__(self, embedder: CLIPEmbedder, name: str) -> None:
        self.embedder = embedder
        self.name = name
        self.modules = (embedder.model,)

    def check_prompt(self, prompt: str) -> None:
        require_text(prompt, self.name)

    @torch.no_grad()
    def score(self, images: Tensor, prompt: str) -> Tensor:
        text = self.embedder.text_embeddings([require_text(prompt, self.name)])  # (1, D)
        return (self.embedder.image_embeddings(images) @ text.T)[:, 0].cpu()  # (B,)


def load_clip_score(
    folder: str | Path, *, tokenizer_dirs: Sequence[str | Path] = (), dtype: torch.dtype = torch.float32,
    title: str = "CLIP score", where_to_get: str = WHERE_TO_GET,
) -> CLIPScore:
    """CLIP score with the ``CLIPModel`` folder ``folder``; ``title`` and ``where_to_get`` name the reward and its
    source in the reward's name and errors (PickScore is this computation with its own checkpoint)."""
    embedder = load_clip(folder, title=title, where_to_get=where_to_get, tokenizer_dirs=tokenizer_dirs, dtype=dtype)
    return CLIPScore(embedder, f"{title}[{Path(folder).name}]")
