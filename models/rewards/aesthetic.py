"""The LAION aesthetic predictor (improved-aesthetic-predictor, ``sac+logos+ava1-l14-linearMSE.pth``): an MLP on the
unit-norm CLIP ViT-L/14 image embedding, as RBF uses it (``rbf/corrector/reward_model/base.py``
``AestheticRewardModel``: 768 -> 1024 -> 128 -> 64 -> 16 -> 1 with dropouts and no nonlinearity, keys
``layers.{0,2,4,6,7}``). The score is on LAION's 1-10 scale (FLUX images about 5.3-5.8 in the paper) and ignores the
prompt. RBF runs the head in bf16; here it stays in float32 (it is tiny), whatever the CLIP model's dtype.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import CheckpointError, load_strict, preview_names, read_checkpoint
from ..families import is_state_dict
from .clip_model import CLIPEmbedder, load_clip

HEAD_FILE = "sac+logos+ava1-l14-linearMSE.pth"
WHERE_TO_GET = (f"{HEAD_FILE} from GitHub christophschuhmann/improved-aesthetic-predictor, next to the Hugging Face "
                "openai/clip-vit-large-patch14 folder, both in ComfyUI/models/rewards")
LINEAR_INDICES = (0, 2, 4, 6, 7)  # the Linear layers of the official Sequential; the others are dropouts
DROPOUTS = {1: 0.2, 3: 0.2, 5: 0.1}


class AestheticHead(nn.Module):
    """The official ``MLP``: ``layers`` = Linear, Dropout, Linear, Dropout, Linear, Dropout, Linear, Linear."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        linears = iter(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.layers = nn.Sequential(*(nn.Dropout(DROPOUTS[i]) if i in DROPOUTS else next(linears) for i in range(8)))

    def forward(self, embedding: Tensor) -> Tensor:
        """Unit-norm CLIP image embeddings ``(B, 768)`` -> scores ``(B, 1)``."""
        return self.layers(embedding)


def load_aesthetic_head(path: str | Path) -> AestheticHead:
    """The head from its ``.pth`` (a plain state dict, read weights-only), its widths from the tensor shapes."""
    state_dict = read_checkpoint(path)
    expected = {f"layers.{i}.{p}" for i in LINEAR_INDICES for p in ("weight", "bias")}
    if not is_state_dict(state_dict) or set(state_dict) != expected:
        found = preview_names(sorted(state_dict)) if isinstance(state_dict, Mapping) else type(state_dict).__name__
        raise CheckpointError(f"{path} is not the LAION aesthetic head: expected the keys layers.{{0,2,4,6,7}}."
                              f"{{weight,bias}}, found {found}; get {WHERE_TO_GET}")
    widths = (state_dict["layers.0.weight"].shape[1],
              *(state_dict[f"layers.{i}.weight"].shape[0] for i in LINEAR_INDICES))  # (768, 1024, 128, 64, 16, 1)
    return load_strict(AestheticHead(widths), {k: v.float() for k, v in state_dict.items()}, source=str(path)).eval()


class AestheticScore:
    """The aesthetic head on CLIP's unit-norm image embedding; the prompt is not used."""

    def __init__(self, embedder: CLIPEmbedder, head: AestheticHead, name: str) -> None:
        if head.layers[0].in_features != embedder.embedding_size:
            raise CheckpointError(
                f"the aesthetic head takes {head.layers[0].in_features}-wide CLIP embeddings but the CLIP model gives "
                f"{embedder.embedding_size}: use the CLIP it was trained on (openai/clip-vit-large-patch14)"
            )
        self.embedder = embedder
        self.head = head
        self.name = name
        self.modules = (embedder.model, head)

    def check_prompt(self, prompt: str) -> None:
        """Any prompt, even an empty one: the aesthetic score looks at the image only."""

    @torch.no_grad()
    def score(self, images: Tensor, prompt: str) -> Tensor:
        embedding = self.embedder.image_embeddings(images)  # (B, 768), float32
        head_device = next(self.head.parameters()).device
        return self.head(embedding.to(head_device))[:, 0].float().cpu()


def load_aesthetic(
    clip_folder: str | Path, head_path: str | Path, *, dtype: torch.dtype = torch.float32
) -> AestheticScore:
    """The LAION aesthetic score from a ``CLIPModel`` folder (ViT-L/14) and the head file."""
    head = load_aesthetic_head(head_path)  # small: a wrong file is reported before the CLIP model is read
    embedder = load_clip(clip_folder, title="The aesthetic score", where_to_get=WHERE_TO_GET, with_tokenizer=False,
                         dtype=dtype)
    return AestheticScore(embedder, head, f"Aesthetic[{Path(head_path).stem}]")
