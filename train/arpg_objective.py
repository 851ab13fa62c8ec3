"""ARPG's training objective: teacher forcing along a random order per image, with target-aware queries, as
``Transformer.forward`` of hp-l33/ARPG (``models/arpg.py`` @ 1a1758c; Li et al., arXiv 2503.10568) trains it.

Per image: a uniformly random order of its L token positions. The content sequence is the class token (10% of them
replaced by the null class, for classifier-free guidance) followed by the first L-1 tokens in that order, each
rotated with its own position; query ``i`` is the ``[MASK]`` embedding rotated with the position ``order[i]``. Both
passes are causal, so query ``i`` sees the class and the first ``i`` tokens of the order and predicts the token at
``order[i]``: one forward trains every prefix length of the random order at once. The loss is the mean cross-entropy
over all L queries.

Left out for the built-in tiny model: the official dropouts (token, residual and FFN, 0.1 each), made for 400
epochs over a fixed dataset; the shapes world gives fresh images at every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..models.arpg import ARPGTransformer

LABEL_DROP = 0.1  # official class_dropout_prob


def random_orders(batch: int, length: int, generator: torch.Generator) -> Tensor:
    """``(B, L)`` int64: an independent uniformly random permutation of the positions per row."""
    return torch.argsort(torch.rand(batch, length, generator=generator), dim=1)


def condition_ids(model: ARPGTransformer, labels: Tensor, generator: torch.Generator) -> Tensor:
    """Class token ids ``(B,)``, :data:`LABEL_DROP` of them replaced by the null class."""
    config = model.config
    dropped = torch.rand(labels.shape, generator=generator) < LABEL_DROP
    return torch.where(dropped, config.null_class_id, config.class_token_id(labels))


def teacher_forced_logits(model: ARPGTransformer, condition: Tensor, tokens: Tensor, orders: Tensor) -> Tensor:
    """Logits ``(B, L, V)`` of every query in one causal forward: query ``i`` predicts the token at ``orders[:, i]``
    from the class token ids ``condition`` ``(B,)`` and the tokens ``(B, L)`` (raster order) at ``orders[:, :i]``."""
    batch = tokens.shape[0]
    shuffled = tokens.gather(1, orders)  # (B, L)
    content = torch.cat([condition[:, None], shuffled[:, :-1]], dim=1)  # (B, L)
    grid = model.config.grid_size
    rope = model.rope_table(grid, grid)  # (1 + L, hd/2, 2): row 0 the class token, raster p at p + 1
    content_rows = torch.cat([torch.zeros(batch, 1, dtype=torch.long), orders[:, :-1] + 1], dim=1)  # (B, L)
    return model(content, rope[content_rows], rope[orders + 1], causal=True)


def arpg_loss(model: ARPGTransformer, tokens: Tensor, labels: Tensor, generator: torch.Generator) -> Tensor:
    """Mean cross-entropy of one batch of token grids flattened in raster order ``(B, L)`` with class ``labels``
    ``(B,)``."""
    orders = random_orders(*tokens.shape, generator)  # (B, L): query i targets position orders[:, i]
    logits = teacher_forced_logits(model, condition_ids(model, labels, generator), tokens, orders)  # (B, L, V)
    return F.cross_entropy(logits.flatten(0, 1), tokens.gather(1, orders).flatten())
