"""An optional recorder that samplers fill with named intermediate tensors and the model-call count.

Samplers take ``trace=None`` and record only when one is given, so the hot loop pays nothing otherwise. Names are
``<scope>.<what>``; the sampler sets ``scope`` (e.g. ``s2.k0`` = stage 2, step 0) before calling code that records.
Searches also append one summary row per step (plain numbers: NFE used, candidate rewards, the choice made).
"""

from __future__ import annotations

from torch import Tensor


class Trace:
    """Named tensors (detached CPU copies), the number of network evaluations (NFE) and per-step summary rows."""

    def __init__(self) -> None:
        self.values: dict[str, Tensor] = {}
        self.scope = ""
        self.nfe = 0
        self.rows: list[dict[str, object]] = []

    def row(self, **fields: object) -> None:
        """Append one step's summary (JSON-friendly values), e.g. ``nfe``, ``rewards``, ``chosen``, ``best``."""
        self.rows.append(fields)

    def record(self, name: str, value: Tensor) -> None:
        key = f"{self.scope}.{name}" if self.scope else name
        self.values[key] = value.detach().to("cpu", copy=True)
