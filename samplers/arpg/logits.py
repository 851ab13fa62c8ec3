"""From the model's two CFG halves to filtered logits: guidance, temperature, top-k, top-p.

Follows ``Transformer.generate`` and ``top_k_top_p_filtering`` (hp-l33/ARPG @ 1a1758c, ``models/arpg.py``):
``uncond + (cond - uncond) * scale``, divided by ``max(temperature, 1e-5)``, then top-k, then top-p.

The official top-p is broken: on the (B, n, V) logits of a step it scatters the "remove" mask back along dim 1
(the token positions) instead of the last dim (the vocabulary). When the vocabulary is larger than the number of
tokens decoded in the step, as with every released model, the scatter indexes out of range and the official
sampler crashes; otherwise it filters the wrong entries. ``top_p_mode="correct"`` (the default) is the nucleus
filter of :func:`kernels.filtering.top_p_filter`; ``"official"`` reproduces the official computation (and refuses,
with a clear error, the cases where the official code crashes), so official runs with ``top_p < 1`` replay exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...kernels.filtering import top_k_filter, top_p_filter

TOP_P_MODES = ("correct", "official")
MIN_TEMPERATURE = 1e-5


def guided_logits(cond: Tensor, uncond: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance in the official operation order."""
    return uncond + (cond - uncond) * scale


def official_top_p_filter(logits: Tensor, p: float) -> Tensor:
    """The official nucleus filter on (B, n, V) logits, including its scatter along dim 1."""
    batch, tokens, vocab = logits.shape
    if vocab > tokens:
        raise ValueError(
            f"the official top-p filter cannot run here: it scatters along the token axis ({tokens} tokens this step) "
            f"with vocabulary indices up to {vocab - 1}, and the official sampler crashes; use top_p_mode='correct'"
        )
    sorted_logits, order = torch.sort(logits, descending=True)
    remove = sorted_logits.softmax(dim=-1).cumsum(dim=-1) > p
    remove[..., 1:] = remove[..., :-1].clone()  # keep the token that crosses the threshold
    remove[..., 0] = False
    remove = remove.scatter(1, order, remove)  # the official indexing (dim 1, not -1)
    return logits.masked_fill(remove, float("-inf"))


def filter_logits(logits: Tensor, *, temperature: float, top_k: int, top_p: float, top_p_mode: str) -> Tensor:
    """Temperature, then top-k (``0`` = off), then top-p (``1`` = off) on (B, n, V) logits."""
    logits = logits / max(temperature, MIN_TEMPERATURE)
    if top_k > 0:
        logits = top_k_filter(logits, top_k)
    if top_p < 1.0:
        logits = official_top_p_filter(logits, top_p) if top_p_mode == "official" else top_p_filter(logits, top_p)
    return logits
