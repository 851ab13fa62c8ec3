"""The Region Mask node: which pixels each region covers, its batch and size, and clear errors."""

from __future__ import annotations

import pytest
import torch

from flowar.nodes.masks import FlowARRegionMask, region_mask


def test_halves_cover_the_named_side() -> None:
    right = region_mask(4, 6, "right", 0.5)
    assert right.tolist() == [[0, 0, 0, 1, 1, 1]] * 4
    assert torch.equal(region_mask(4, 6, "left", 0.5), 1 - right)
    bottom = region_mask(4, 6, "bottom", 0.25)
    assert bottom.sum(dim=1).tolist() == [0, 0, 0, 6] and torch.equal(region_mask(4, 6, "top", 0.75), 1 - bottom)
    assert region_mask(4, 6, "right", 0.0).sum() == 0 and region_mask(4, 6, "right", 1.0).sum() == 24


def test_border_and_centre_are_complements_with_bands_on_every_edge() -> None:
    border = region_mask(8, 8, "border", 0.5)  # bands of 2 px on each side, a 4x4 centre kept
    assert border.sum() == 64 - 16 and border[2:6, 2:6].sum() == 0
    assert torch.equal(region_mask(8, 8, "centre", 0.5), 1 - border)


def test_node_follows_the_image_batch_and_size() -> None:
    mask = FlowARRegionMask().make(torch.zeros(3, 32, 16, 3), "right", 0.5)[0]
    assert mask.shape == (3, 32, 16) and mask.dtype == torch.float32
    assert mask[:, :, 8:].eq(1).all() and mask[:, :, :8].eq(0).all()


@pytest.mark.parametrize("region, amount, message", [("middle", 0.5, "unknown region 'middle'"),
                                                     ("right", 1.5, "amount must be between 0 and 1")])
def test_bad_settings_are_named(region: str, amount: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        region_mask(4, 4, region, amount)
