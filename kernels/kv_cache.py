"""A preallocated key/value cache for incremental decoding.

ARPG's official code grows its caches by ``torch.cat`` at every step (``models/arpg.py``), reallocating and
copying the whole cache each time. This cache allocates its full length once per run and writes new entries in
place; readers get views of the filled prefix. It holds plain tensors, not parameters, so it never appears in a
state dict, and ``release`` drops the storage (call it in ``finally`` so an interrupted run frees memory).
"""

from __future__ import annotations

import torch
from torch import Tensor


class StaticKVCache:
    """Keys and values of up to ``max_len`` tokens, laid out (B, H, L, D) (``seq_dim=2``) or (B, L, H, D) (``seq_dim=1``)."""

    def __init__(
        self,
        batch: int,
        heads: int,
        max_len: int,
        head_dim: int,
        *,
        seq_dim: int = 2,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        if seq_dim not in (1, 2):
            raise ValueError(f"seq_dim must be 1 (B, L, H, D) or 2 (B, H, L, D), got {seq_dim}")
        shape = [batch, heads, max_len, head_dim] if seq_dim == 2 else [batch, max_len, heads, head_dim]
        self.seq_dim = seq_dim
        self.max_len = max_len
        self.length = 0
        self._k: Tensor | None = torch.empty(shape, dtype=dtype, device=device)
        self._v: Tensor | None = torch.empty(shape, dtype=dtype, device=device)

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Write ``k``/``v`` (new tokens along ``seq_dim``) after the filled prefix; return views of all entries."""
        if self._k is None or self._v is None:
            raise RuntimeError("the KV cache was released; allocate a new one for a new run")
        new = k.shape[self.seq_dim]
        end = self.length + new
        if end > self.max_len:
            raise RuntimeError(f"KV cache overflow: {end} entries requested, capacity {self.max_len}")
        self._k.narrow(self.seq_dim, self.length, new).copy_(k)
        self._v.narrow(self.seq_dim, self.length, new).copy_(v)
        self.length = end
        return self.keys, self.values

    @property
    def keys(self) -> Tensor:
        """View of the cached keys, ``length`` entries along ``seq_dim``."""
        if self._k is None:
            raise RuntimeError("the KV cache was released")
        return self._k.narrow(self.seq_dim, 0, self.length)

    @property
    def values(self) -> Tensor:
        """View of the cached values, ``length`` entries along ``seq_dim``."""
        if self._v is None:
            raise RuntimeError("the KV cache was released")
        return self._v.narrow(self.seq_dim, 0, self.length)

    @property
    def allocated(self) -> bool:
        """Whether the cache still holds storage."""
        return self._k is not None

    def release(self) -> None:
        """Drop the storage; the cache cannot be used afterwards."""
        self._k = self._v = None
        self.length = 0
