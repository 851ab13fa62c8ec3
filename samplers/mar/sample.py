"""MAR's masked-autoregressive loop: reveal tokens in a random order, a few per iteration, each drawn by the
per-token diffusion head conditioned on the transformer's output.

Follows ``MAR.sample_tokens`` (LTH14/mar @ fe470ac, ``models/mar.py``): one random order per sample; after iteration
k the first ``floor(L cos(pi/2 (k+1)/K))`` positions of the order stay masked, clamped so that every iteration
reveals at least one token and one stays masked until the last iteration, which reveals the rest; classifier-free
guidance doubles the transformer batch with the learned null class and guides the head's eps with
``1 + (cfg - 1)(L - mask_len)/L`` (linear, using the clamped mask length, so the last iteration never reaches cfg)
or ``cfg`` (constant); ``cfg == 1`` runs no unconditional branch.

Beyond the official code: inpainting (known tokens are given, the order lists the unknown positions first so only
they are generated, and the schedule runs over each sample's own unknown count; rows with different counts run the
transformer in groups, since its encoder drops the unknown rows and needs equal counts per batch).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..common import Callback, KnownTokens, Trace
from .diffusion import DiffusionSchedule, guided_output, sample_tokens
from .noise import MARNoise

CFG_SCHEDULES = ("linear", "constant")


def unknown_first(orders: Tensor, unknown: Tensor) -> Tensor:
    """Reorder each permutation so its unknown positions come first (keeping their random order)."""
    unknown_along_order = torch.gather(unknown, 1, orders)  # (B, L) bool, in order
    rank = torch.argsort((~unknown_along_order).to(torch.int8), dim=1, stable=True)
    return torch.gather(orders, 1, rank)


def masked_after(unknown_at_start: int, num_iter: int) -> list[int]:
    """How many tokens stay masked after each iteration: ``floor(U cos(pi/2 (k+1)/K))`` (float64, as the official
    numpy code), clamped to at least 1 and to one fewer than are masked now (never more than are masked)."""
    lengths, unknown = [], unknown_at_start
    for k in range(num_iter):
        target = math.floor(unknown_at_start * math.cos(math.pi / 2.0 * (k + 1) / num_iter))
        unknown = min(unknown, max(1, min(unknown - 1, target)))
        lengths.append(unknown)
    return lengths


def keep_masked(orders: Tensor, counts: Tensor) -> Tensor:
    """(B, L) bool: True at the first ``counts[b]`` positions of each order."""
    rank = torch.argsort(orders, dim=1)  # position -> its index in the order
    return rank < counts[:, None]


def transformer_by_groups(model: nn.Module, tokens: Tensor, mask: Tensor, class_rows: Tensor) -> Tensor:
    """``model(tokens, mask, class_rows)``, run per group of rows with the same unknown count when they differ."""
    counts = mask.sum(dim=1)
    if bool((counts == counts[0]).all()):
        return model(tokens, mask, class_rows)
    groups = [counts == count for count in counts.unique()]
    parts = {int(rows.nonzero()[0]): (rows, model(tokens[rows], mask[rows], class_rows[rows])) for rows in groups}
    first = next(iter(parts.values()))[1]
    z = first.new_empty(tokens.shape[0], *first.shape[1:])
    for rows, part in parts.values():
        z[rows] = part
    return z


def iteration_cfg(cfg: float, schedule: str, unknown_at_start: Tensor, mask_len: Tensor) -> Tensor:
    """Per-row guidance of one iteration (float32 as the official tensor arithmetic)."""
    if schedule == "linear":
        return 1 + (cfg - 1) * (unknown_at_start - mask_len) / unknown_at_start
    if schedule == "constant":
        return torch.full_like(mask_len, cfg)
    raise ValueError(f"unknown cfg schedule {schedule!r}; choose one of {', '.join(CFG_SCHEDULES)}")


def sample_mar(
    model: nn.Module,
    *,
    labels: Tensor | None,
    batch: int,
    num_iter: int,
    cfg: float,
    cfg_schedule: str,
    temperature: float,
    schedule: DiffusionSchedule,
    noise: MARNoise,
    device: torch.device,
    known: KnownTokens | None = None,
    callback: Callback | None = None,
    trace: Trace | None = None,
) -> Tensor:
    """Generate tokens (B, L, C) float32. ``labels`` (B,) or None for unconditional (the null class).

    ``model`` offers ``config`` (``seq_len``, ``token_dim``), ``class_embedding(labels, B)``,
    ``model(tokens, mask, class_rows) -> z`` and ``denoise(x, timesteps, z)`` (see ``models/mar.py``).
    """
    if cfg_schedule not in CFG_SCHEDULES:
        raise ValueError(f"unknown cfg schedule {cfg_schedule!r}; choose one of {', '.join(CFG_SCHEDULES)}")
    length, channels = model.config.seq_len, model.config.token_dim
    if known is None:
        tokens = torch.zeros(batch, length, channels, device=device)
        mask = torch.ones(batch, length, device=device)
    else:
        mask = (~known.known).float().to(device)
        tokens = known.tokens.float().to(device) * (1 - mask)[..., None]
    unknown_at_start = mask.sum(dim=1)  # (B,) float32
    schedule_rows = [masked_after(int(count), num_iter) for count in unknown_at_start.tolist()]
    orders = unknown_first(noise.orders(batch, length).to(device), mask.bool())
    use_cfg = cfg != 1.0
    class_rows = model.class_embedding(labels.to(device) if labels is not None else None, batch)
    if use_cfg:
        class_rows = torch.cat([class_rows, model.class_embedding(None, batch)])

    for k in range(num_iter):
        if trace is not None:
            trace.scope = f"iter{k}"
            trace.record("tokens_in", tokens)
            trace.record("mask_in", mask)
        doubled = (lambda t: torch.cat([t, t])) if use_cfg else (lambda t: t)  # noqa: E731
        z = transformer_by_groups(model, doubled(tokens), doubled(mask), class_rows)  # (B', L, D)
        mask_len = torch.tensor([row[k] for row in schedule_rows], dtype=torch.float32, device=device)  # (B,)
        still_masked = keep_masked(orders, mask_len) & mask.bool()
        last = k == num_iter - 1
        to_predict = mask.bool() if last else mask.bool() & ~still_masked  # (B, L)
        scale = iteration_cfg(cfg, cfg_schedule, unknown_at_start, mask_len)  # (B,)

        z_cond = z[:batch][to_predict]  # (M, D) row-major (batch, position)
        rows = z_cond.shape[0]
        if use_cfg:
            conditions = torch.cat([z_cond, z[batch:][to_predict]])  # (2M, D)
            token_scale = scale[:, None].expand(batch, length)[to_predict][:, None]  # (M, 1)
            pair = torch.empty(2 * rows, channels, device=device)  # reused every head step

            def denoise(x: Tensor, timesteps: Tensor) -> Tensor:
                pair[:rows], pair[rows:] = x, x
                return guided_output(model.denoise(pair, timesteps.repeat(2), conditions), channels, token_scale)
        else:
            def denoise(x: Tensor, timesteps: Tensor) -> Tensor:
                return model.denoise(x, timesteps, z_cond)

        start = noise.start(k, rows, channels).to(device)
        sampled = sample_tokens(denoise, start, schedule,
                                lambda j: noise.step(k, j, rows, channels).to(device), temperature=temperature)
        if trace is not None:
            for name, value in (("z_full", z), ("mask_to_pred", to_predict), ("cfg_iter", scale[0]),
                                ("sampled", sampled), ("z_sel", conditions if use_cfg else z_cond)):
                trace.record(name, value)
            if not last:
                trace.record("mask_next", still_masked)
        tokens = tokens.clone()
        tokens[to_predict] = sampled
        mask = still_masked.float()
        if callback is not None:
            callback(k + 1, num_iter, None)
    return tokens
