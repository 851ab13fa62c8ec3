"""The one mask -> token rule both token families use (``samplers.common.regenerated_tokens``): a token is
regenerated when any pixel of its cell has mask >= 0.5; per-sample masks; a mask of another size is refused."""

from __future__ import annotations

import pytest
import torch

from flowar.nodes.arpg import one_token_set
from flowar.nodes.mar import known_tokens_from_mask
from flowar.samplers.common import MASK_THRESHOLD, KnownTokens, regenerated_tokens


@pytest.mark.parametrize("value, regenerated", [(0.0, False), (0.4999, False), (0.5, True), (0.75, True)])
def test_a_token_is_regenerated_from_mask_value_one_half(value: float, regenerated: bool) -> None:
    mask = torch.zeros(1, 8, 8)
    mask[0, 5, 6] = value  # one pixel of the token at row 1, column 1 of a 2x2 grid of 4x4 cells
    tokens = regenerated_tokens(mask, (8, 8), (2, 2))
    assert tokens.shape == (1, 2, 2) and MASK_THRESHOLD == 0.5
    assert tokens[0, 1, 1].item() is regenerated and not tokens[0].flatten()[:3].any()


def test_mar_and_arpg_agree_at_the_boundary() -> None:
    """A mask of exactly 0.5 regenerates the token in both families (MAR kept it before: the rules were opposite)."""
    mask = torch.full((1, 8, 8), 0.5)
    image = torch.zeros(1, 8, 8, 3)
    assert not known_tokens_from_mask(mask, image, grid=2, batch=1).any()  # MAR: nothing known
    assert one_token_set(regenerated_tokens(mask, (8, 8), (2, 2))).all()  # ARPG: everything regenerated


def test_each_sample_keeps_its_own_mask() -> None:
    mask = torch.zeros(2, 8, 8)
    mask[0, :4, :4] = 1  # sample 0: top-left token
    mask[1, 4:, 4:] = 1  # sample 1: bottom-right token
    tokens = regenerated_tokens(mask, (8, 8), (2, 2))
    assert tokens.tolist() == [[[True, False], [False, False]], [[False, False], [False, True]]]
    known = known_tokens_from_mask(mask, torch.zeros(2, 8, 8, 3), grid=2, batch=2)  # MAR: per sample
    assert known.tolist() == [[False, True, True, True], [True, True, True, False]]
    with pytest.raises(ValueError, match="select different tokens"):  # ARPG decodes one set for the batch
        one_token_set(tokens)


def test_a_2d_mask_is_one_sample_and_cells_may_be_unequal() -> None:
    mask = torch.zeros(10, 10)
    mask[9, 0] = 1  # the last row belongs to the second of two unequal cells (adaptive pooling)
    assert regenerated_tokens(mask, (10, 10), (2, 2)).tolist() == [[[False, False], [True, False]]]


def test_a_mask_of_another_size_than_the_image_is_refused() -> None:
    with pytest.raises(ValueError, match="the mask is 64x64 but the image is 32x32: they must have the same size"):
        regenerated_tokens(torch.zeros(1, 64, 64), (32, 32), (2, 2))
    with pytest.raises(ValueError, match="the mask is 64x64 but the image is 32x32"):
        known_tokens_from_mask(torch.zeros(1, 64, 64), torch.zeros(1, 32, 32, 3), grid=2, batch=1)
    with pytest.raises(ValueError, match=r"\[B, H, W\] or \[H, W\]"):
        regenerated_tokens(torch.zeros(1, 1, 8, 8), (8, 8), (2, 2))


def test_known_tokens_from_a_grid_flatten_in_raster_order() -> None:
    grid = torch.arange(12).view(2, 2, 3)  # (B, h, w)
    keep = torch.tensor([[True, False, True], [False, False, True]])  # (h, w), shared by the batch
    known = KnownTokens.from_grid(grid, keep)
    assert known.tokens.tolist() == [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]]
    assert known.known.tolist() == [[True, False, True, False, False, True]] * 2
    with pytest.raises(ValueError, match="do not fit the token grid"):
        KnownTokens.from_grid(grid, torch.ones(3, 3, dtype=torch.bool))
