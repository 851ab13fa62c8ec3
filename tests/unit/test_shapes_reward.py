"""The shapes-world analyser against ground truth (clean, noisy and blurred), and the shape-count reward: caption
parsing, scores on hand-made images, and the node through the Reward node."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from flowar.models.rewards import RewardModel
from flowar.models.rewards.shapes_count import ShapesCountReward
from flowar.models.shapes import COLOURS, PALETTE, parse_caption, shape_mask
from flowar.models.shapes_analyser import analyse, class_counts
from flowar.nodes.rewards import FlowARRankImages, FlowARReward, FlowARShapesCountReward
from flowar.tooling.world import generate_many, image_batch

ROBUST = generate_many(range(5000, 5200))


def paint(*objects: tuple[str, str, int, int, int], size: int = 32) -> Tensor:
    """IMAGE ``[1, size, size, 3]`` with ``(shape, colour, x0, y0, s)`` objects drawn as the world draws them."""
    image = torch.zeros(size, size, 3)
    for shape, colour, x0, y0, s in objects:
        image[y0:y0 + s, x0:x0 + s][shape_mask(shape, s)] = torch.tensor(PALETTE[COLOURS.index(colour)]) / 255
    return image[None]


def accuracy(samples: list, images: Tensor) -> float:
    """Share of images whose found objects are exactly the true ones (shape and colour of each)."""
    found = analyse(images)
    key = lambda obj: (obj.shape, obj.colour)  # noqa: E731
    return sum(sorted(map(key, f)) == sorted(map(key, s.objects)) for f, s in zip(found, samples)) / len(samples)


def test_analyser_reports_the_true_objects_on_1000_images() -> None:
    samples = generate_many(range(1000))
    found = analyse(image_batch(samples))
    exact = sum(sorted(f, key=lambda o: o.bbox) == sorted(s.objects, key=lambda o: o.bbox)
                for f, s in zip(found, samples))  # shape, colour, box and area
    assert exact >= 990


def test_analyser_tolerates_noise_and_blur() -> None:
    images = image_batch(ROBUST)
    generator = torch.Generator().manual_seed(0)
    noisy = (images + 0.1 * torch.randn(images.shape, generator=generator)).clamp(0, 1)
    assert accuracy(ROBUST, noisy) >= 0.95  # measured 1.00 (0.95 at noise 0.15)
    kernel = torch.exp(-torch.arange(-1.0, 2.0) ** 2 / (2 * 0.7**2))
    kernel = (kernel[:, None] * kernel[None] / kernel.sum() ** 2).expand(3, 1, 3, 3)  # Gaussian, sigma 0.7 px
    blurred = F.conv2d(images.permute(0, 3, 1, 2), kernel, padding=1, groups=3).permute(0, 2, 3, 1)
    blurred = (blurred + 0.05 * torch.randn(blurred.shape, generator=generator)).clamp(0, 1)
    assert accuracy(ROBUST, blurred) >= 0.9  # measured 0.95


def test_analyser_scales_to_larger_images() -> None:
    images = image_batch(ROBUST[:50])
    large = F.interpolate(images.permute(0, 3, 1, 2), scale_factor=2, mode="nearest").permute(0, 2, 3, 1)
    assert accuracy(ROBUST[:50], large) == 1.0


def test_analyser_ignores_specks_and_off_palette_colours_and_flags_odd_blobs() -> None:
    image = paint(("square", "red", 2, 2, 9))
    image[0, 20:23, 20:23] = torch.tensor(PALETTE[1]) / 255  # a 9-pixel green speck
    image[0, 25:31, 2:12] = 1.0  # a white bar: no palette colour
    image[0, 14:17, 20:32] = torch.tensor(PALETTE[2]) / 255  # a blue 3x12 bar: no shape
    objects = analyse(image)[0]
    assert [(o.shape, o.colour, o.bbox, o.area) for o in objects] == [
        ("square", "red", (2, 2, 11, 11), 81), ("other", "blue", (20, 14, 32, 17), 36)]
    counts = class_counts(image)[0]
    assert counts[4] == 1 and counts[12] == 1 and counts.sum() == 2


def test_caption_parsing() -> None:
    wanted = parse_caption("three blue squares")
    assert wanted[6] == 3 and wanted.sum() == 3
    wanted = parse_caption("Two red circles and one green triangle.")
    assert wanted[0] == 2 and wanted[9] == 1 and wanted.sum() == 3
    for bad, says in (("", "expected e.g."), ("three purple squares", "no class"), ("red circle", "write a count"),
                      ("two red hexagons", "no class")):
        with pytest.raises(ValueError, match=says):
            parse_caption(bad)


def test_squared_error_reward_on_hand_made_images() -> None:
    reward = ShapesCountReward()
    assert isinstance(reward, RewardModel) and reward.modules == ()
    right = paint(("circle", "red", 1, 1, 9), ("circle", "red", 15, 15, 11))
    wrong_colour = paint(("circle", "red", 1, 1, 9), ("circle", "green", 15, 15, 11))
    extra = paint(("circle", "red", 1, 1, 9), ("circle", "red", 15, 15, 11), ("square", "blue", 1, 20, 8))
    missing = paint(("circle", "red", 1, 1, 9))
    scores = reward.score(torch.cat([right, wrong_colour, extra, missing]), "two red circles")
    assert scores.dtype == torch.float32 and scores.tolist() == [0.0, -2.0, -1.0, -1.0]
    assert reward.score(torch.zeros(1, 32, 32, 3), "four yellow triangles").tolist() == [-16.0]


def test_exact_reward_and_errors() -> None:
    reward = ShapesCountReward("exact")
    images = torch.cat([paint(("triangle", "yellow", 3, 3, 10)), paint(("triangle", "blue", 3, 3, 10))])
    assert reward.score(images, "one yellow triangle").tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="choose one of squared_error, exact"):
        ShapesCountReward("absolute")
    with pytest.raises(ValueError, match="NaN"):
        reward.score(torch.full((1, 32, 32, 3), float("nan")), "one yellow triangle")


def test_node_gives_a_reward_that_ranks_the_right_image_first() -> None:
    (model,) = FlowARShapesCountReward().load("squared_error")
    (reward,) = FlowARReward().make(model, "two red circles")
    with pytest.raises(ValueError, match="shapes caption"):
        FlowARReward().make(model, "a cat")
    images = torch.cat([paint(("circle", "red", 1, 1, 9)), paint(("circle", "red", 1, 1, 9), ("circle", "red", 15,
                                                                                                15, 11))])
    assert reward.score(images).tolist() == [-1.0, 0.0]
    _, text, best = FlowARRankImages().rank(images, reward)
    assert best == 1 and "ShapesCount('two red circles')" in text
