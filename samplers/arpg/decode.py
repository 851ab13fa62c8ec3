"""ARPG's randomized parallel decoding: many positions per step, in a random order, against one KV cache.

Follows ``Transformer.generate`` (hp-l33/ARPG @ 1a1758c, ``models/arpg.py``; Li et al., "Autoregressive Image
Generation with Randomized Parallel Decoding", arXiv 2503.10568). One random order of the positions is drawn for
the whole batch. Step 0 feeds the class token (and the null class for the CFG half) and queries the first positions
of the order; every later step feeds the tokens sampled at the previous step, with their positions' RoPE rows,
and queries the next positions. The tokens of the last step are never fed back. Guidance is one doubled batch,
conditional half first.

Beyond the official code:

* the caches are allocated once per run with their final length (one per content layer plus the shared one of the
  guided layers) and released in ``finally``, so an interrupted run leaves no memory behind;
* zero-shot editing (inpainting, outpainting, resolution expansion): known tokens are fed with the class token at
  step 0 at their own positions, and the schedule runs over the unknown positions only. Outpainting and larger
  canvases take the RoPE rows of a grid larger than the training one (:meth:`ARPGTransformer.rope_table`);
* ``raster``: one position per step in raster order, the sequential baseline the parallel mode is measured against;
* a correct top-p (the official one is broken; see :mod:`samplers.arpg.logits`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ...models.arpg import ARPGConfig, ARPGKVCache, ARPGTransformer
from ..common import Callback, KnownTokens, Trace
from .logits import TOP_P_MODES, filter_logits, guided_logits
from .noise import ARPGNoise, sample_tokens
from .schedule import CFG_SCHEDULES, DECODE_SCHEDULES, guidance_scale, tokens_per_step

Preview = Callable[[Tensor, Tensor], "Tensor | None"]  # (tokens (B, h, w), decided (h, w) bool) -> IMAGE | None


@dataclass(frozen=True)
class DecodeSettings:
    """Sampling options (the official ``generate`` arguments, plus the raster schedule and the top-p mode)."""

    steps: int = 64
    schedule: str = "arccos"  # arccos | cosine | raster
    guidance: float = 4.0
    cfg_schedule: str = "linear"  # linear | constant
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1 = off
    top_p_mode: str = "correct"  # correct | official

    def check(self, vocab_size: int) -> None:
        """Raise ``ValueError`` naming the first option out of range (steps are checked by the schedule)."""
        choices = (("schedule", self.schedule, DECODE_SCHEDULES), ("cfg_schedule", self.cfg_schedule, CFG_SCHEDULES),
                   ("top_p_mode", self.top_p_mode, TOP_P_MODES))
        for name, value, allowed in choices:
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if not self.guidance >= 0:
            raise ValueError(f"cfg must be >= 0, got {self.guidance}")
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 <= self.top_k <= vocab_size:
            raise ValueError(f"top_k must be between 0 (off) and the vocabulary size {vocab_size}, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")

    @property
    def uses_guidance(self) -> bool:
        """Whether the unconditional half is needed (a scale of 1 everywhere is the conditional logits)."""
        return self.guidance != 1.0


def check_labels(labels: Tensor, num_classes: int) -> None:
    if labels.dim() != 1 or labels.numel() == 0:
        raise ValueError(f"class labels must be a non-empty 1-D tensor, got shape {tuple(labels.shape)}")
    low, high = int(labels.min()), int(labels.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"class index {low if low < 0 else high} is out of range: this model has classes "
                         f"0..{num_classes - 1}")


def check_known(known: KnownTokens, batch: int, grid: tuple[int, int], vocab_size: int) -> Tensor:
    """The kept raster positions (L,) bool, after checking ``known`` fits the batch and the grid: ARPG decodes one
    order of positions for the whole batch, so every row must keep the same positions."""
    length = grid[0] * grid[1]
    if tuple(known.tokens.shape) != (batch, length) or tuple(known.known.shape) != (batch, length):
        raise ValueError(f"known tokens {tuple(known.tokens.shape)} / positions {tuple(known.known.shape)} do not fit "
                         f"a batch of {batch} on a {grid[0]}x{grid[1]} token grid ({length} positions)")
    if not bool((known.known == known.known[:1]).all()):
        raise ValueError("the batch keeps different token positions: ARPG decodes one set of positions for the whole "
                         "batch; use one mask")
    kept = known.tokens[known.known.to(known.tokens.device)]  # (B*K,)
    if kept.numel() and (int(kept.min()) < 0 or int(kept.max()) >= vocab_size):
        raise ValueError(f"known tokens must be codebook indices 0..{vocab_size - 1}: use the tokenizer the model "
                         "was trained with")
    return known.known[0].cpu()


def generation_order(unknown: Tensor, schedule: str, draws: ARPGNoise) -> Tensor:
    """The unknown raster positions (ascending) in the order they are decoded: drawn at random, or raster."""
    if schedule == "raster":
        return unknown
    return unknown[torch.argsort(draws.order_uniforms(len(unknown)))]


def first_content(config: ARPGConfig, labels: Tensor, known_tokens: Tensor, known_positions: Tensor, halves: int
                  ) -> tuple[Tensor, Tensor]:
    """Step 0's content ids (halves*B, 1 + K) and RoPE rows (1 + K,): the class token (the null class in the CFG
    half, second) with its zero row, then the known tokens (B, K) at their raster positions (K,)."""
    class_ids = config.class_token_id(labels)[:, None]  # (B, 1)
    prefix = torch.cat([class_ids, torch.full_like(class_ids, config.null_class_id)]) if halves == 2 else class_ids
    content = torch.cat([prefix, known_tokens.repeat(halves, 1)], dim=1)
    rows = torch.cat([torch.zeros(1, dtype=torch.long, device=known_positions.device), known_positions + 1])
    return content, rows


def sample_arpg(
    model: ARPGTransformer,
    labels: Tensor,
    *,
    grid: tuple[int, int],
    settings: DecodeSettings,
    draws: ARPGNoise,
    device: torch.device,
    known: KnownTokens | None = None,
    callback: Callback | None = None,
    preview: Preview | None = None,
    trace: Trace | None = None,
) -> Tensor:
    """Decode a token grid (B, h, w) int64 for class ``labels`` (B,).

    ``known`` keeps its marked positions (zero-shot editing); ``callback`` is called after every step (it may raise
    to interrupt the run: the caches are released either way); ``preview`` turns the partial grid into an image for
    the callback. ``trace`` records every step under the official fixture names (``step<k>.<what>``).
    """
    config = model.config
    settings.check(config.vocab_size)
    check_labels(labels, config.num_classes)
    batch, (height, width) = labels.shape[0], grid
    known_map = (check_known(known, batch, grid, config.vocab_size) if known is not None
                 else torch.zeros(height * width, dtype=torch.bool))  # (L,)
    unknown = (~known_map).nonzero().flatten()  # raster positions to decode
    counts = tokens_per_step(len(unknown), settings.steps, settings.schedule)
    order = generation_order(unknown, settings.schedule, draws).to(device)  # (U,)

    known_positions = known_map.nonzero().flatten().to(device)  # (K,)
    tokens = torch.zeros(batch, height * width, dtype=torch.long, device=device)
    if known is not None:
        tokens[:, known_positions] = known.tokens.to(device)[:, known_positions]
    decided = known_map.clone().to(device)
    rope = model.rope_table(height, width).to(device)  # (1 + h*w, hd/2, 2)

    halves = 2 if settings.uses_guidance else 1
    content, content_rows = first_content(config, labels.to(device), tokens[:, known_positions], known_positions,
                                          halves)
    capacity = content.shape[1] + len(order) - counts[-1]  # everything fed; the last step's tokens never are
    unusable = torch.zeros((), dtype=torch.bool, device=device)

    if trace is not None:
        trace.scope = ""
        trace.record("orders", order + 1)
    with torch.no_grad():
        cache = model.new_kv_cache(halves * batch, capacity, device=device, dtype=model.activation_dtype)
        try:
            start = 0
            for step, count in enumerate(counts):
                targets = order[start:start + count]  # (n,) raster positions decoded now
                start += count
                scale = guidance_scale(settings.guidance, start, len(order), settings.cfg_schedule)
                logits = model(content, rope[content_rows], rope[targets + 1], cache=cache)  # (halves*B, n, V)
                cond, uncond = logits.chunk(2) if halves == 2 else (logits, None)
                guided = guided_logits(cond, uncond, scale) if uncond is not None else cond
                final = filter_logits(guided, temperature=settings.temperature, top_k=settings.top_k,
                                      top_p=settings.top_p, top_p_mode=settings.top_p_mode)
                probs = final.softmax(dim=-1)  # (B, n, V)
                unusable |= ~torch.isfinite(probs).all()  # checked once after the loop: no host sync per step
                sampled = sample_tokens(probs, draws.token_uniforms((batch, count)))  # (B, n)
                if trace is not None:
                    _record_step(trace, step, content, content_rows, targets, cond, uncond, scale, final, probs,
                                 sampled, cache)
                tokens[:, targets] = sampled
                decided[targets] = True
                content, content_rows = sampled.repeat(halves, 1), targets + 1
                if callback is not None:
                    shown = preview(tokens.view(batch, height, width), decided.view(height, width)) if preview else None
                    callback(step + 1, len(counts), shown)
        finally:
            cache.release()
    if unusable:
        raise FloatingPointError("the model produced NaN or infinite logits: check its weights and dtype (fp16 can "
                                 "overflow; try bf16 or fp32)")
    if trace is not None:
        trace.scope = ""
        trace.record("tokens_generation_order", tokens[:, order])
        trace.record("tokens_raster", tokens)
    return tokens.view(batch, height, width)


def _record_step(trace: Trace, step: int, content: Tensor, content_rows: Tensor, targets: Tensor, cond: Tensor,
                 uncond: Tensor | None, scale: float, final: Tensor, probs: Tensor, sampled: Tensor,
                 cache: ARPGKVCache) -> None:
    """One step under the official fixture names; caches in the official layouts (shared one (B, L, H, hd))."""
    trace.scope = f"step{step}"
    trace.nfe += 1
    trace.record("input_ids", content)
    trace.record("key_pos_index", content_rows)
    trace.record("query_pos_index", targets + 1)
    trace.record("cond_logits", cond)
    if uncond is not None:
        trace.record("uncond_logits", uncond)
    trace.record("cfg_scale", torch.tensor([scale], dtype=torch.float64))
    trace.record("final_logits", final)
    trace.record("probs", probs)
    trace.record("sampled", sampled)
    trace.record("self_cache_len", torch.tensor([cache.content[0].length]))
    trace.record("cross_cache_len", torch.tensor([cache.shared.length]))
    for index, layer_cache in enumerate(cache.content):
        trace.record(f"self{index}_k_cache", layer_cache.keys)
        trace.record(f"self{index}_v_cache", layer_cache.values)
    trace.record("cross_k_cache", cache.shared.keys.transpose(1, 2))
    trace.record("cross_v_cache", cache.shared.values.transpose(1, 2))
