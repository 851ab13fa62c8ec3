"""The shapes world exactly as issue 8 fixes it: palette, sizes, object counts, gaps, classes and captions, and
the generator's determinism."""

from __future__ import annotations

import re

import pytest
import torch

from flowar.models.shapes import CANVAS, CAPTIONS, CLASS_NAMES, PALETTE, caption, class_index, class_parts, \
    shape_mask
from flowar.tooling.world import boxes_apart, generate, generate_many, image_batch

SAMPLES = generate_many(range(400))


def test_classes_and_palette_are_the_issue_s() -> None:
    assert CLASS_NAMES[:5] == ("red circle", "green circle", "blue circle", "yellow circle", "red square")
    assert CLASS_NAMES[-1] == "yellow triangle" and len(CLASS_NAMES) == 12
    assert PALETTE == ((220, 40, 40), (40, 190, 70), (50, 90, 230), (230, 210, 40))
    assert class_index("triangle", "blue") == 10 and class_parts(10) == ("triangle", "blue")
    assert all(class_index(*class_parts(index)) == index for index in range(12))


def test_captions_count_in_words_with_plurals() -> None:
    assert caption(0, 1) == "one red circle"
    assert caption(6, 3) == "three blue squares"
    assert caption(11, 4) == "four yellow triangles"
    assert len(CAPTIONS) == len(set(CAPTIONS)) == 48
    grammar = re.compile(r"^(one (red|green|blue|yellow) (circle|square|triangle)|(two|three|four) "
                         r"(red|green|blue|yellow) (circles|squares|triangles))$")
    assert all(grammar.match(text) for text in CAPTIONS)


@pytest.mark.parametrize("size", range(7, 12))
def test_every_shape_fills_exactly_its_box(size: int) -> None:
    for shape in ("circle", "square", "triangle"):
        mask = shape_mask(shape, size)
        assert mask.any(0).all() and mask.any(1).all(), (shape, size)  # touches all four sides
        assert torch.equal(mask, mask.flip(1)), (shape, size)  # left-right symmetric
    triangle = shape_mask("triangle", size)
    assert triangle[-1].all() and 1 <= triangle[0].sum() <= 2  # base along the bottom, apex at the top
    assert torch.equal(shape_mask("circle", size), shape_mask("circle", size).T)


def test_generator_is_deterministic_per_seed() -> None:
    again = generate(17)
    assert torch.equal(again.image, SAMPLES[17].image) and again.objects == SAMPLES[17].objects
    assert again.caption == SAMPLES[17].caption
    assert not torch.equal(generate(18).image, again.image)


def test_generated_images_follow_the_world_spec() -> None:
    palette = {(0, 0, 0), *PALETTE}
    for sample in SAMPLES:
        image = sample.image
        assert image.shape == (CANVAS, CANVAS, 3) and image.dtype == torch.uint8
        assert {tuple(pixel) for pixel in image.view(-1, 3).tolist()} <= palette
        assert 1 <= sample.count == len(sample.objects) <= 4
        assert sample.caption == caption(sample.class_index, sample.count)
        assert {(obj.shape, obj.colour) for obj in sample.objects} == {class_parts(sample.class_index)}
        for i, obj in enumerate(sample.objects):
            x0, y0, x1, y1 = obj.bbox
            assert 0 <= x0 and 0 <= y0 and x1 <= CANVAS and y1 <= CANVAS
            assert 7 <= x1 - x0 == y1 - y0 <= 11
            drawn = image[y0:y1, x0:x1].bool().any(-1)  # (s, s)
            assert torch.equal(drawn, shape_mask(obj.shape, x1 - x0)) and obj.area == int(drawn.sum())
            assert all(boxes_apart(obj.bbox, other.bbox) for other in sample.objects[i + 1:])
        assert image.bool().any(-1).sum() == sum(obj.area for obj in sample.objects)  # nothing else drawn


def test_the_seeds_cover_every_class_and_count() -> None:
    assert {sample.class_index for sample in SAMPLES} == set(range(12))
    assert {sample.count for sample in SAMPLES} == {1, 2, 3, 4}
    assert {obj.bbox[2] - obj.bbox[0] for sample in SAMPLES for obj in sample.objects} == set(range(7, 12))


def test_boxes_apart_needs_two_empty_pixels() -> None:
    assert boxes_apart((0, 0, 7, 7), (9, 0, 16, 7)) and not boxes_apart((0, 0, 7, 7), (8, 0, 15, 7))
    assert boxes_apart((0, 0, 7, 7), (3, 9, 10, 16)) and not boxes_apart((0, 0, 7, 7), (8, 8, 15, 15))


def test_image_batch_is_a_comfyui_image() -> None:
    batch = image_batch(SAMPLES[:3])
    assert batch.shape == (3, CANVAS, CANVAS, 3) and batch.dtype == torch.float32
    assert torch.equal((batch * 255).round().to(torch.uint8), torch.stack([s.image for s in SAMPLES[:3]]))
