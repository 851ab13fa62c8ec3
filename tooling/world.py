"""The shapes-world generator (world spec: :mod:`models.shapes`): one image per seed, with its ground-truth objects,
class, count and caption, for training the built-in models, the benchmarks and the tests.

Each seed drives its own ``torch.Generator`` (never the global RNG), so an image depends on its seed alone and any
subset of seeds can be drawn in any order. Draws: class and count uniform, then per object a size uniform in 7-11
and a top-left corner uniform over the canvas, redrawn until its box keeps :data:`MIN_GAP` empty pixels to every
box placed before (a layout that gets stuck is started over from its first object, with the same generator).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.shapes import CANVAS, CLASS_NAMES, COLOURS, COUNTS, MIN_GAP, PALETTE, SIZES, ShapeObject, caption, \
    class_parts, shape_mask

PLACEMENT_TRIES = 50  # corner draws per object before the layout starts over (4 boxes of 11 always fit)


@dataclass(frozen=True)
class ShapesSample:
    """One generated image with what it shows."""

    image: Tensor  # (32, 32, 3) uint8 RGB
    objects: tuple[ShapeObject, ...]
    class_index: int
    count: int
    caption: str
    seed: int


def boxes_apart(a: tuple[int, int, int, int], b: tuple[int, int, int, int], gap: int = MIN_GAP) -> bool:
    """Whether boxes ``(x0, y0, x1, y1)`` (end exclusive) leave at least ``gap`` empty pixels between them along
    x or along y."""
    return max(a[0] - b[2], b[0] - a[2], a[1] - b[3], b[1] - a[3]) >= gap


def _draw(low: int, high: int, generator: torch.Generator) -> int:
    """An integer uniform in ``[low, high)`` from ``generator``."""
    return int(torch.randint(low, high, (1,), generator=generator))


def _layout(count: int, generator: torch.Generator) -> list[tuple[int, int, int, int]]:
    """``count`` boxes ``(x0, y0, x1, y1)`` of sizes in :data:`SIZES`, inside the canvas, pairwise apart."""
    while True:
        boxes: list[tuple[int, int, int, int]] = []
        for _ in range(count):
            size = _draw(SIZES.start, SIZES.stop, generator)
            for _ in range(PLACEMENT_TRIES):
                x0, y0 = _draw(0, CANVAS - size + 1, generator), _draw(0, CANVAS - size + 1, generator)
                box = (x0, y0, x0 + size, y0 + size)
                if all(boxes_apart(box, other) for other in boxes):
                    boxes.append(box)
                    break
            else:
                break  # stuck: start the layout over
        if len(boxes) == count:
            return boxes


def generate(seed: int) -> ShapesSample:
    """The world image of ``seed`` and its ground truth."""
    generator = torch.Generator().manual_seed(seed)
    index = _draw(0, len(CLASS_NAMES), generator)
    count = _draw(COUNTS.start, COUNTS.stop, generator)
    shape, colour = class_parts(index)
    rgb = torch.tensor(PALETTE[COLOURS.index(colour)], dtype=torch.uint8)
    image = torch.zeros(CANVAS, CANVAS, 3, dtype=torch.uint8)  # black background
    objects = []
    for x0, y0, x1, y1 in _layout(count, generator):
        mask = shape_mask(shape, x1 - x0)  # (s, s)
        image[y0:y1, x0:x1][mask] = rgb
        objects.append(ShapeObject(shape, colour, (x0, y0, x1, y1), int(mask.sum())))
    return ShapesSample(image, tuple(objects), index, count, caption(index, count), seed)


def generate_many(seeds: Iterable[int]) -> list[ShapesSample]:
    """:func:`generate` for every seed, in order."""
    return [generate(seed) for seed in seeds]


def image_batch(samples: Iterable[ShapesSample]) -> Tensor:
    """The samples' images as a ComfyUI IMAGE ``[N, 32, 32, 3]`` float32 in 0..1."""
    return torch.stack([sample.image for sample in samples]).float() / 255
