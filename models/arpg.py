"""ARPG's two-pass transformer: content self-attention, one shared K/V, and position-guided query layers.

Li et al., "Autoregressive Image Generation with Randomized Parallel Decoding" (arXiv 2503.10568); parameter names
and shapes follow ``models/arpg.py`` of hp-l33/ARPG @ 1a1758c so the released ``arpg_*.pt`` load strictly.

Pass 1 runs the content tokens (the class token, then image tokens already decided) through ordinary pre-norm
Llama blocks (``layers.self_dec``), each token rotated with the 2D RoPE of its own position. One RMSNorm and two
projections turn the result into a single key/value set shared by every layer of pass 2 (``layers.to_k/to_v``).
Pass 2 (``layers.cross_dec``) runs *queries*: every query is the embedding of the same ``[MASK]`` id and differs
from the others only by the RoPE of the position it must predict. Because position lives in the queries and
content in the keys/values, any set of positions can be asked for at once against the same cache.

Attention is causal only in the training forward (``causal=True``); the official sampler runs the model in eval
mode, where neither pass is masked: queries see every cached token, and tokens fed together see each other.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels.attention import attention
from ..kernels.kv_cache import StaticKVCache
from ..kernels.rope import apply_arpg_rope, arpg_rope_table
from . import Operations, ReleasedModel

# Official ``ModelArgs`` names that only matter in training; accepted in a sidecar and ignored.
TRAINING_ONLY_ARGS = frozenset({
    "initializer_range", "token_dropout_p", "attn_dropout_p", "resid_dropout_p", "ffn_dropout_p", "drop_path_rate",
    "class_dropout_prob", "model_type",
})


@dataclass(frozen=True)
class ARPGConfig:
    """The official ``ModelArgs`` that shape the network (names as in ``models/arpg.py``)."""

    dim: int
    n_layer: int
    n_head: int
    vocab_size: int = 16384
    num_classes: int = 1000
    block_size: int = 256
    multiple_of: int = 256
    ffn_dim_multiplier: float | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    cls_token_num: int = 1

    def __post_init__(self) -> None:
        if self.dim % self.n_head or (self.dim // self.n_head) % 4:
            raise ValueError(f"dim {self.dim} / n_head {self.n_head} must give a head size divisible by 4 (2D RoPE)")
        if self.n_layer % 2:
            raise ValueError(f"n_layer must be even (half content layers, half guided layers), got {self.n_layer}")
        if self.cls_token_num != 1:
            raise ValueError(f"only class-conditional models with one class token are supported, got "
                             f"cls_token_num={self.cls_token_num}")
        if round(self.block_size**0.5) ** 2 != self.block_size:
            raise ValueError(f"block_size must be a square token grid, got {self.block_size}")

    @classmethod
    def from_model_args(cls, args: dict) -> ARPGConfig:
        """Build from the official constructor arguments; training-only names are ignored, unknown ones refused."""
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(args) - known - TRAINING_ONLY_ARGS)
        if unknown:
            raise ValueError(f"unknown ARPG model arguments {unknown}")
        return cls(**{name: value for name, value in args.items() if name in known})

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_head

    @property
    def ffn_hidden(self) -> int:
        """SwiGLU width: ``int(2 * 4d / 3)``, times the multiplier, rounded up to ``multiple_of``."""
        hidden = int(2 * 4 * self.dim / 3)
        if self.ffn_dim_multiplier is not None:
            hidden = int(self.ffn_dim_multiplier * hidden)
        return -(-hidden // self.multiple_of) * self.multiple_of

    @property
    def grid_size(self) -> int:
        """Side of the token grid the model was trained on (16 for the releases)."""
        return round(self.block_size**0.5)

    @property
    def mask_token_id(self) -> int:
        """The query token: every guided-pass input is this embedding."""
        return self.vocab_size

    @property
    def null_class_id(self) -> int:
        """The class token of the unconditional (CFG) branch."""
        return self.vocab_size + self.num_classes + 1

    def class_token_id(self, labels: Tensor) -> Tensor:
        """Class ``c`` is fed as token ``c + vocab_size + 1``."""
        return labels + self.vocab_size + 1


class FeedForward(nn.Module):
    """SwiGLU ``w2(silu(w1 x) * w3 x)``, no biases."""

    def __init__(self, config: ARPGConfig, ops: Operations, **factory) -> None:
        super().__init__()
        dim, hidden = config.dim, config.ffn_hidden
        self.w1 = ops.Linear(dim, hidden, bias=False, **factory)
        self.w3 = ops.Linear(dim, hidden, bias=False, **factory)
        self.w2 = ops.Linear(hidden, dim, bias=False, **factory)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, L, D) -> (B, L, H, hd), the layout RoPE is applied in."""
    return x.unflatten(-1, (heads, -1))


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, L, hd) -> (B, L, D)."""
    return x.transpose(1, 2).flatten(2)


class SelfAttention(nn.Module):
    """Content attention: q and k rotated with the tokens' own positions; new keys/values go to the layer's cache."""

    def __init__(self, config: ARPGConfig, ops: Operations, **factory) -> None:
        super().__init__()
        self.heads = config.n_head
        dim = config.dim
        self.to_q = ops.Linear(dim, dim, bias=False, **factory)
        self.to_k = ops.Linear(dim, dim, bias=False, **factory)
        self.to_v = ops.Linear(dim, dim, bias=False, **factory)
        self.proj = ops.Linear(dim, dim, bias=False, **factory)

    def forward(self, x: Tensor, rope: Tensor, cache: StaticKVCache | None, causal: bool) -> Tensor:
        q = apply_arpg_rope(split_heads(self.to_q(x), self.heads), rope).transpose(1, 2)  # (B, H, m, hd)
        k = apply_arpg_rope(split_heads(self.to_k(x), self.heads), rope).transpose(1, 2)
        v = split_heads(self.to_v(x), self.heads).transpose(1, 2)
        if cache is not None:
            k, v = cache.append(k, v)  # views of everything cached so far, (B, H, n_cached, hd)
        return self.proj(merge_heads(attention(q, k, v, causal=causal)))


class GuidedAttention(nn.Module):
    """Query attention over the shared keys/values; q rotated with the *target* positions (no k/v of its own)."""

    def __init__(self, config: ARPGConfig, ops: Operations, **factory) -> None:
        super().__init__()
        self.heads = config.n_head
        self.to_q = ops.Linear(config.dim, config.dim, bias=False, **factory)
        self.proj = ops.Linear(config.dim, config.dim, bias=False, **factory)

    def forward(self, x: Tensor, rope: Tensor, keys: Tensor, values: Tensor, causal: bool) -> Tensor:
        q = apply_arpg_rope(split_heads(self.to_q(x), self.heads), rope).transpose(1, 2)  # (B, H, n, hd)
        return self.proj(merge_heads(attention(q, keys, values, causal=causal)))


class SelfLayer(nn.Module):
    """``SelfDecoder``: pre-norm attention and SwiGLU over the content tokens."""

    def __init__(self, config: ARPGConfig, ops: Operations, **factory) -> None:
        super().__init__()
        self.attn = SelfAttention(config, ops, **factory)
        self.ffn = FeedForward(config, ops, **factory)
        self.attn_norm = ops.RMSNorm(config.dim, eps=config.norm_eps, **factory)
        self.ffn_norm = ops.RMSNorm(config.dim, eps=config.norm_eps, **factory)

    def forward(self, x: Tensor, rope: Tensor, cache: StaticKVCache | None, causal: bool) -> Tensor:
        x = x + self.attn(self.attn_norm(x), rope, cache, causal)
        return x + self.ffn(self.ffn_norm(x))


class GuidedLayer(nn.Module):
    """``CrossDecoder``: pre-norm guided attention and SwiGLU over the queries."""

    def __init__(self, config: ARPGConfig, ops: Operations, **factory) -> None:
        super().__init__()
        self.attn = GuidedAttention(config, ops, **factory)
        self.ffn = FeedForward(config, ops, **factory)
        self.attn_norm = ops.RMSNorm(config.dim, eps=config.norm_eps, **factory)
        self.ffn_norm = ops.RMSNorm(config.dim, eps=config.norm_eps, **factory)

    def forward(self, x: Tensor, rope: Tensor, keys: Tensor, values: Tensor, causal: bool) -> Tensor:
        x = x + self.attn(self.attn_norm(x), rope, keys, values, causal)
        return x + self.ffn(self.ffn_norm(x))


@dataclass
class ARPGKVCache:
    """Preallocated caches of one decoding run: one per content layer, plus the single K/V the guided layers share.

    ``n_layer/2 + 1`` caches instead of ``n_layer``: the guided layers never cache their queries. All are laid out
    (B, H, L, hd). ``release`` frees every one; call it in ``finally`` so an interrupted run leaves nothing behind.
    """

    content: list[StaticKVCache]
    shared: StaticKVCache

    @property
    def allocated(self) -> bool:
        return self.shared.allocated or any(cache.allocated for cache in self.content)

    def release(self) -> None:
        for cache in (*self.content, self.shared):
            cache.release()


class TwoPassDecoder(nn.Module):
    """``Decoder_Decoder``: the content layers, the shared K/V projection and the guided layers."""

    def __init__(self, config: ARPGConfig, ops: Operations, **factory) -> None:
        super().__init__()
        self.heads = config.n_head
        half = config.n_layer // 2
        self.self_dec = nn.ModuleList(SelfLayer(config, ops, **factory) for _ in range(half))
        self.cross_dec = nn.ModuleList(GuidedLayer(config, ops, **factory) for _ in range(half))
        self.norm = ops.RMSNorm(config.dim, eps=config.norm_eps, **factory)
        self.to_k = ops.Linear(config.dim, config.dim, bias=False, **factory)
        self.to_v = ops.Linear(config.dim, config.dim, bias=False, **factory)

    def forward(self, x: Tensor, queries: Tensor, content_rope: Tensor, query_rope: Tensor,
                cache: ARPGKVCache | None, causal: bool) -> Tensor:
        for index, layer in enumerate(self.self_dec):
            x = layer(x, content_rope, cache.content[index] if cache is not None else None, causal)
        x = self.norm(x)
        keys = apply_arpg_rope(split_heads(self.to_k(x), self.heads), content_rope).transpose(1, 2)  # (B, H, m, hd)
        values = split_heads(self.to_v(x), self.heads).transpose(1, 2)  # values carry no position
        if cache is not None:
            keys, values = cache.shared.append(keys, values)
        for layer in self.cross_dec:
            queries = layer(queries, query_rope, keys, values, causal)
        return queries


class ARPGTransformer(ReleasedModel):
    """Logits of the tokens at requested positions, given the content decided so far."""

    DTYPE_REFERENCE = "head.weight"

    def __init__(
        self,
        config: ARPGConfig,
        *,
        operations: Operations = nn,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        compute_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(config, compute_dtype)
        ops, factory = operations, {"device": device, "dtype": dtype}
        # image codes, [MASK], the classes, the null class, one unused id
        self.embeddings = ops.Embedding(config.vocab_size + config.num_classes + 3, config.dim, **factory)
        self.layers = TwoPassDecoder(config, ops, **factory)
        self.norm = ops.RMSNorm(config.dim, eps=config.norm_eps, **factory)
        self.head = ops.Linear(config.dim, config.vocab_size, bias=False, **factory)

    def rope_table(self, height: int, width: int) -> Tensor:
        """float32 ``(1 + height*width, head_dim/2, 2)``: row 0 for the class token (zeros), raster ``p`` at ``p+1``.

        The official table (``precompute_freqs_cis_2d``) covers the training grid; a larger grid (resolution
        expansion) takes the rows of its positions from a table of side ``max(height, width)``, so positions inside
        the training grid keep their trained rotations.
        """
        side = max(height, width)
        table = arpg_rope_table(side, self.config.head_dim, base=self.config.rope_base)  # (1 + side², hd/2, 2)
        rows = torch.arange(height)[:, None] * side + torch.arange(width)[None, :]  # (h, w) raster -> table index
        return torch.cat([table[:1], table[1 + rows.flatten()]])

    def new_kv_cache(self, batch: int, capacity: int, *, device: torch.device, dtype: torch.dtype) -> ARPGKVCache:
        """Caches for ``capacity`` content tokens of ``batch`` sequences, allocated once for a whole run."""
        config = self.config
        make = lambda: StaticKVCache(batch, config.n_head, capacity, config.head_dim,  # noqa: E731
                                     dtype=dtype, device=device)
        return ARPGKVCache([make() for _ in self.layers.self_dec], make())

    def forward(
        self,
        content_ids: Tensor,
        content_rope: Tensor,
        query_rope: Tensor,
        *,
        cache: ARPGKVCache | None = None,
        causal: bool = False,
    ) -> Tensor:
        """Logits (B, n, vocab) float32 for n target positions.

        ``content_ids`` (B, m): class ids (``class_token_id``) and image tokens fed this call; ``content_rope``
        (m, hd/2, 2) or (B, m, hd/2, 2): their RoPE rows; ``query_rope`` (n, …) or (B, n, …): the rows of the
        positions to predict. With a ``cache`` the new content is appended to it and the queries see everything
        cached; ``causal=True`` is the training forward (query i sees content 0..i), which takes no cache.
        """
        if causal and cache is not None:
            raise ValueError("the causal (training) forward does not use a KV cache")
        dtype = self.activation_dtype
        batch, queries_count = content_ids.shape[0], query_rope.shape[-3]
        x = self.embeddings(content_ids).to(dtype)  # (B, m, D)
        mask_ids = torch.full((batch, queries_count), self.config.mask_token_id, device=content_ids.device)
        queries = self.embeddings(mask_ids).to(dtype)  # (B, n, D), identical rows
        out = self.layers(x, queries, content_rope, query_rope, cache, causal)
        return self.head(self.norm(out)).float()
