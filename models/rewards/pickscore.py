"""PickScore (Kirstain et al., "Pick-a-Pic", NeurIPS 2023) as RBF computes it (``rbf/corrector/reward_model/
pickscore.py``): the CLIP-H/14 checkpoint ``yuvalkirstain/PickScore_v1``, text tokenized with the CLIP tokenizer
(RBF takes ``openai/clip-vit-large-patch14``'s: the same BPE vocabulary), images resized to 224 and CLIP-normalised,
score = the cosine of the unit-norm embeddings, *not* multiplied by ``logit_scale`` (about 100) as the PickScore
reference does; ranks are the same either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .clip_score import CLIPScore, load_clip_score

WHERE_TO_GET = ("Hugging Face yuvalkirstain/PickScore_v1 (the whole folder) into ComfyUI/models/rewards; if it has no "
                "tokenizer files, any CLIP folder's tokenizer (e.g. openai/clip-vit-large-patch14) serves")


def load_pickscore(
    folder: str | Path, *, tokenizer_dirs: Sequence[str | Path] = (), dtype: torch.dtype = torch.float32
) -> CLIPScore:
    """PickScore with the ``CLIPModel`` folder ``folder``; the tokenizer from it or the first of ``tokenizer_dirs``."""
    return load_clip_score(folder, tokenizer_dirs=tokenizer_dirs, dtype=dtype, title="PickScore",
                           where_to_get=WHERE_TO_GET)
