"""An optional recorder that samplers fill with named intermediate tensors and the model-call count.

Samplers take ``trace=None`` and record only when one is given, so the hot loop pays nothing otherwise. Names are
``<scope>.<what>``; the sampler sets ``scope`` (e.g. ``s2.k0`` = stage 2, step 0) before calling code that records.
"""

from __future__ import annotations

from torch import Tensor


class Trace:
    """Named tensors (detached CPU copies) and the number of network evaluations (NFE)."""

    def __init__(self) -> None:
        self.values: dict[str, Tensor] = {}
        self.scope = ""
        self.nfe = 0

    def record(self, name: str, value: Tensor) -> None:
        key = f"{self.scope}.{name}" if self.scope else name
        self.values[key] = value.detach().to("cpu", copy=True)
