"""Kernels against plain references (and the RoPE tables against the official ones recorded in the fixtures)."""

from __future__ import annotations

import math

import pytest
import torch
from support.fixtures import case_params

from flowar.kernels.attention import attention, padding_bias
from flowar.kernels.embeddings import sinusoidal_embedding
from flowar.kernels.filtering import top_k_filter, top_p_filter
from flowar.kernels.kv_cache import StaticKVCache
from flowar.kernels.rope import (
    apply_arpg_rope,
    apply_pixelflow_rope,
    arpg_rope_table,
    pixelflow_rope_table,
)


# ---- RoPE -----------------------------------------------------------------------------------------------------
def reference_angle(head_dim: int, pair: int, first: int, second: int, base: float = 10000.0) -> float:
    """Angle of pair ``pair`` for coordinates (first axis, second axis), written out term by term."""
    quarter = head_dim // 4
    axis_coord, k = (first, pair) if pair < quarter else (second, pair - quarter)
    return axis_coord * base ** (-(2 * k) / (head_dim / 2))


@pytest.mark.parametrize("grid,head_dim", [(3, 8), (4, 16)])
def test_pixelflow_table_rotates_column_first(grid: int, head_dim: int) -> None:
    table = pixelflow_rope_table(grid, head_dim)
    assert table.shape == (grid * grid, head_dim, 2)
    for row in range(grid):
        for col in range(grid):
            for channel in range(head_dim):
                angle = reference_angle(head_dim, channel // 2, col, row)
                assert table[row * grid + col, channel, 0].item() == pytest.approx(math.cos(angle), abs=1e-6)
                assert table[row * grid + col, channel, 1].item() == pytest.approx(math.sin(angle), abs=1e-6)


@pytest.mark.parametrize("grid,head_dim,cls", [(3, 8, 1), (4, 16, 2)])
def test_arpg_table_rotates_row_first_with_zero_class_rows(grid: int, head_dim: int, cls: int) -> None:
    table = arpg_rope_table(grid, head_dim, cls_token_num=cls)
    assert table.shape == (cls + grid * grid, head_dim // 2, 2)
    assert torch.count_nonzero(table[:cls]) == 0
    for row in range(grid):
        for col in range(grid):
            for pair in range(head_dim // 2):
                angle = reference_angle(head_dim, pair, row, col)
                entry = table[cls + row * grid + col, pair]
                assert entry[0].item() == pytest.approx(math.cos(angle), abs=1e-6)
                assert entry[1].item() == pytest.approx(math.sin(angle), abs=1e-6)


def test_rope_application_matches_complex_rotation() -> None:
    torch.manual_seed(0)
    grid, head_dim = 4, 16
    x = torch.randn(2, 3, grid * grid, head_dim)  # (B, H, N, D)
    table = pixelflow_rope_table(grid, head_dim)
    rotation = torch.polar(torch.ones(grid * grid, head_dim // 2), torch.atan2(table[:, 0::2, 1], table[:, 0::2, 0]))
    expected = torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2))) * rotation).flatten(-2)
    torch.testing.assert_close(apply_pixelflow_rope(x, table), expected, atol=1e-5, rtol=1e-5)

    arpg = arpg_rope_table(grid, head_dim)
    y = torch.randn(2, grid * grid + 1, 3, head_dim)  # (B, N, H, D)
    rotated = apply_arpg_rope(y, arpg)
    assert torch.count_nonzero(rotated[:, 0]) == 0  # the class token's q/k are zeroed, as officially
    norms_kept = rotated[:, 1:].unflatten(-1, (-1, 2)).norm(dim=-1)
    torch.testing.assert_close(norms_kept, y[:, 1:].unflatten(-1, (-1, 2)).norm(dim=-1), atol=1e-5, rtol=1e-5)


def test_rope_keeps_half_precision_inputs_in_their_dtype() -> None:
    x = torch.randn(1, 2, 4, 8, dtype=torch.bfloat16)
    assert apply_pixelflow_rope(x, pixelflow_rope_table(2, 8)).dtype == torch.bfloat16


def test_rope_rejects_head_dim_not_multiple_of_four() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        pixelflow_rope_table(4, 18)


@pytest.mark.parametrize("case", case_params("pixelflow"))
def test_pixelflow_rope_tables_match_fixtures(case) -> None:
    tables = case.tensors_ending("pos_embed")
    if not tables:
        pytest.skip(f"{case.name} records no RoPE table")
    for name, recorded in tables.items():
        tokens, head_dim, _ = recorded.shape
        grid = math.isqrt(tokens)
        torch.testing.assert_close(pixelflow_rope_table(grid, head_dim), recorded, atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize("case", case_params("arpg"))
def test_arpg_rope_tables_match_fixtures(case) -> None:
    tables = case.tensors_ending("freqs_cis")
    if not tables:
        pytest.skip(f"{case.name} records no RoPE table")
    args = case.config["model_args"]
    for name, recorded in tables.items():
        cls = args.get("cls_token_num", 1)
        grid = math.isqrt(recorded.shape[0] - cls)
        built = arpg_rope_table(grid, recorded.shape[1] * 2, base=args.get("rope_base", 10000), cls_token_num=cls)
        torch.testing.assert_close(built, recorded, atol=1e-6, rtol=0, msg=name)


# ---- timestep embedding ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shift", [0.0, 1.0])
@pytest.mark.parametrize("dim", [8, 9])
def test_sinusoidal_embedding_matches_formula(shift: float, dim: int) -> None:
    values = torch.tensor([0.0, 3.0, 999.0])
    embedding = sinusoidal_embedding(values, dim, frequency_shift=shift)
    half = dim // 2
    assert embedding.shape == (3, dim)
    for row, value in enumerate(values.tolist()):
        for j in range(half):
            freq = math.exp(-math.log(10000.0) * j / (half - shift))
            assert embedding[row, j].item() == pytest.approx(math.cos(value * freq), abs=2e-4)
            assert embedding[row, half + j].item() == pytest.approx(math.sin(value * freq), abs=2e-4)
    if dim % 2:
        assert torch.all(embedding[:, -1] == 0)
    flipped = sinusoidal_embedding(values, dim, frequency_shift=shift, cos_first=False)
    torch.testing.assert_close(flipped[:, :half], embedding[:, half : 2 * half])


# ---- attention ------------------------------------------------------------------------------------------------
def reference_attention(q, k, v, bias=None):
    logits = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    return logits.softmax(-1) @ v


def test_attention_matches_reference_with_masks() -> None:
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 3, 5, 8), torch.randn(2, 3, 7, 8), torch.randn(2, 3, 7, 8)
    torch.testing.assert_close(attention(q, k, v), reference_attention(q, k, v), atol=1e-5, rtol=1e-5)

    keep = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1]])
    bias = padding_bias(keep)
    assert bias.shape == (2, 1, 1, 7)
    masked = attention(q, k, v, mask=bias)
    torch.testing.assert_close(masked, reference_attention(q, k, v, bias), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked[0], reference_attention(q[0], k[0, :, :3], v[0, :, :3]), atol=1e-5, rtol=1e-5)
    boolean = attention(q, k, v, mask=keep.bool()[:, None, None, :])
    torch.testing.assert_close(boolean, masked, atol=1e-5, rtol=1e-5)


def test_attention_causal_matches_reference() -> None:
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 2, 6, 4) for _ in range(3))
    causal_bias = torch.full((6, 6), float("-inf")).triu(1)
    torch.testing.assert_close(attention(q, k, v, causal=True), reference_attention(q, k, v, causal_bias))


def test_attention_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="attention shapes disagree"):
        attention(torch.randn(1, 1, 2, 4), torch.randn(1, 1, 3, 8), torch.randn(1, 1, 3, 8))


# ---- top-k / top-p --------------------------------------------------------------------------------------------
def reference_top_p_row(logits: list[float], p: float) -> set[int]:
    probs = torch.tensor(logits).softmax(0).tolist()
    order = sorted(range(len(probs)), key=lambda i: -probs[i])
    kept, mass = set(), 0.0
    for index in order:
        kept.add(index)
        mass += probs[index]
        if mass >= p:
            break
    return kept


def test_top_k_keeps_k_largest_per_row_of_any_rank() -> None:
    logits = torch.tensor([[[1.0, 5.0, 3.0, 2.0], [9.0, 0.0, 8.0, 7.0]]])  # (1, 2, 4): tokens x vocab
    filtered = top_k_filter(logits, 2)
    assert torch.isfinite(filtered).tolist() == [[[False, True, True, False], [True, False, True, False]]]
    assert torch.equal(top_k_filter(logits, 0), logits)


@pytest.mark.parametrize("p", [0.3, 0.6, 0.9, 0.999])
def test_top_p_keeps_nucleus_on_last_dim(p: float) -> None:
    torch.manual_seed(3)
    logits = torch.randn(2, 3, 11)  # more vocabulary entries than tokens: the official filter breaks here
    filtered = top_p_filter(logits, p)
    for b in range(2):
        for t in range(3):
            kept = {i for i in range(11) if torch.isfinite(filtered[b, t, i])}
            assert kept == reference_top_p_row(logits[b, t].tolist(), p)
            assert torch.equal(filtered[b, t][list(kept)], logits[b, t][list(kept)])


def test_top_p_edge_values() -> None:
    logits = torch.randn(4, 6)
    assert torch.equal(top_p_filter(logits, 1.0), logits)
    assert torch.isfinite(top_p_filter(logits, 1e-6)).sum(-1).tolist() == [1, 1, 1, 1]
    with pytest.raises(ValueError, match="top_p"):
        top_p_filter(logits, 0.0)


# ---- static KV cache ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seq_dim", [1, 2])
def test_static_kv_cache_equals_concatenation(seq_dim: int) -> None:
    torch.manual_seed(4)
    cache = StaticKVCache(2, 3, 10, 4, seq_dim=seq_dim)
    storage = cache.keys.untyped_storage().data_ptr()
    reference_k, reference_v = [], []
    for new in (1, 3, 2):
        shape = [2, 3, 4]
        shape.insert(seq_dim, new)
        k, v = torch.randn(shape), torch.randn(shape)
        reference_k.append(k)
        reference_v.append(v)
        keys, values = cache.append(k, v)
        assert torch.equal(keys, torch.cat(reference_k, seq_dim))
        assert torch.equal(values, torch.cat(reference_v, seq_dim))
    assert cache.length == 6
    assert cache.keys.untyped_storage().data_ptr() == storage  # written in place, never reallocated


def test_static_kv_cache_overflow_and_release() -> None:
    cache = StaticKVCache(1, 1, 2, 4)
    with pytest.raises(RuntimeError, match="overflow"):
        cache.append(torch.zeros(1, 1, 3, 4), torch.zeros(1, 1, 3, 4))
    cache.release()
    assert not cache.allocated
    with pytest.raises(RuntimeError, match="released"):
        cache.append(torch.zeros(1, 1, 1, 4), torch.zeros(1, 1, 1, 4))
