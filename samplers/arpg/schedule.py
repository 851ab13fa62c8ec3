"""How many tokens ARPG decodes at each step, and the guidance scale of each step (pure functions).

Follows ``Transformer.generate`` (hp-l33/ARPG @ 1a1758c, ``models/arpg.py``; Li et al., arXiv 2503.10568): at step
``s`` of ``T`` the fraction of positions still masked afterwards is ``arccos((s+1)/T) / (pi/2)`` (or
``cos(pi/2 (s+1)/T)``); ``int(count * fraction)`` positions stay masked, clipped to at least one and to at most all
but one of those left, and the last step decodes whatever remains. The linear guidance scale grows with the
number of decided positions *after* the step, reaching the full scale on the last one.

``raster`` is the sequential baseline: one position per step, in raster order.
"""

from __future__ import annotations

import math

DECODE_SCHEDULES = ("arccos", "cosine", "raster")
CFG_SCHEDULES = ("linear", "constant")


def masked_fraction(step: int, steps: int, schedule: str) -> float:
    """Fraction of the positions left masked after ``step`` (0-based) of ``steps``, in float64 as officially."""
    progress = (step + 1) / steps
    if schedule == "arccos":
        return math.acos(progress) / (math.pi / 2)
    if schedule == "cosine":
        return math.cos(math.pi / 2 * progress)
    raise ValueError(f"unknown sample schedule {schedule!r}; choose one of {', '.join(DECODE_SCHEDULES)}")


def tokens_per_step(count: int, steps: int, schedule: str) -> list[int]:
    """Positions decoded at each step when ``count`` positions are unknown (``steps`` is ignored for raster).

    Every step decodes at least one position whenever ``1 <= steps <= count``.
    """
    if count < 1:
        raise ValueError("nothing to generate: every token position is already known")
    if schedule == "raster":
        return [1] * count
    if not 1 <= steps <= count:
        raise ValueError(f"steps must be between 1 and the number of tokens to generate ({count}), got {steps}")
    counts, decided = [], 0
    for step in range(steps - 1):
        left = count - decided
        still_masked = max(1, min(left - 1, int(count * masked_fraction(step, steps, schedule))))
        counts.append(left - still_masked)
        decided += counts[-1]
    counts.append(count - decided)
    return counts


def guidance_scale(guidance: float, decided: int, count: int, schedule: str) -> float:
    """The CFG scale of a step after which ``decided`` of ``count`` positions are known.

    ``linear``: ``1 + (guidance - 1) * decided / count``; ``constant``: ``guidance``.
    """
    if schedule == "linear":
        return 1.0 + (guidance - 1.0) * decided / count
    if schedule == "constant":
        return guidance
    raise ValueError(f"unknown guidance schedule {schedule!r}; choose one of {', '.join(CFG_SCHEDULES)}")
