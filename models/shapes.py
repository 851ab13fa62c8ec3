"""The shapes world of the pack's built-in tiny models (issue "Built-in models I"), fixed exactly so that anyone can
check generated images independently: 32x32 RGB on pure black, 1 to 4 filled objects of ONE class (shape and colour),
3 shapes x 4 colours = 12 classes, captions such as ``"three blue squares"``.

Run-time code: the analyser (:mod:`.shapes_analyser`) and the shape-count reward read these constants and parse
captions; the world generator (``tooling/world.py``) draws with :func:`shape_mask`, so what is drawn and what
is recognised come from one definition.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .rewards.count_prompt import parse_count_prompt

CANVAS = 32  # pixels per side of a world image
SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow")
PALETTE = ((220, 40, 40), (40, 190, 70), (50, 90, 230), (230, 210, 40))  # RGB of COLOURS, on black (0, 0, 0)
SIZES = range(7, 12)  # bounding size s of an object, in pixels
COUNTS = range(1, 5)  # objects per image
MIN_GAP = 2  # empty pixels at least between two objects' bounding boxes
COUNT_WORDS = ("one", "two", "three", "four")
CLASS_NAMES = tuple(f"{colour} {shape}" for shape in SHAPES for colour in COLOURS)  # index = shape * 4 + colour
CAPTION_EXAMPLE = '"three blue squares" or "one red circle and two green triangles"'


@dataclass(frozen=True)
class ShapeObject:
    """One object of a world image: what was drawn, or what the analyser found (``shape`` "other" when its geometry
    fits no shape)."""

    shape: str
    colour: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels, end exclusive
    area: int  # pixels


def class_index(shape: str, colour: str) -> int:
    """``shape_index * 4 + colour_index``, the class order of the world."""
    return SHAPES.index(shape) * len(COLOURS) + COLOURS.index(colour)


def class_parts(index: int) -> tuple[str, str]:
    """(shape, colour) of class ``index``."""
    return SHAPES[index // len(COLOURS)], COLOURS[index % len(COLOURS)]


def caption(index: int, count: int) -> str:
    """``"<count word> <colour> <shape, plural when count > 1>"``, e.g. ``"four yellow triangles"``."""
    return f"{COUNT_WORDS[count - 1]} {CLASS_NAMES[index]}{'s' if count > 1 else ''}"


CAPTIONS = tuple(caption(index, count) for index in range(len(CLASS_NAMES)) for count in COUNTS)


def parse_caption(prompt: str) -> Tensor:
    """Wanted objects per class ``(12,)`` int64 from a caption (``"two red circles"``) or a list of them
    (``"two red circles and one blue square"``); a ``ValueError`` naming the expected form otherwise."""
    try:
        items = parse_count_prompt(prompt)
    except ValueError as error:
        raise ValueError(f"shapes caption: {error}; expected e.g. {CAPTION_EXAMPLE}") from None
    wanted = torch.zeros(len(CLASS_NAMES), dtype=torch.int64)
    for name, count in items:
        words = name.lower().split()
        singular = " ".join(words[:1] + [words[-1].removesuffix("s")]) if len(words) == 2 else ""
        if singular not in CLASS_NAMES:
            raise ValueError(f"shapes caption: {name!r} in {prompt!r} is no class of the shapes world; name a colour "
                             f"({', '.join(COLOURS)}) and a shape ({', '.join(SHAPES)}), e.g. {CAPTION_EXAMPLE}")
        wanted[CLASS_NAMES.index(singular)] += count  # "one red circle and one red circle" wants two
    return wanted


def shape_mask(shape: str, size: int) -> Tensor:
    """The filled ``shape`` in its ``size x size`` box ``(size, size)`` bool, tested at pixel centres (hard edges).

    Circle: the disc of diameter ``size``. Square: the whole box. Triangle: upright, base along the bottom row, apex
    at the top centre; each row is tested at its lower edge so the top row holds the apex (1 or 2 pixels) and the
    bounding box stays exactly ``size`` for even sizes too.
    """
    centre = size / 2
    y = torch.arange(size, dtype=torch.float64)[:, None] + 0.5  # (s, 1) row centres
    x = torch.arange(size, dtype=torch.float64)[None, :] + 0.5  # (1, s) column centres
    if shape == "circle":
        return (x - centre) ** 2 + (y - centre) ** 2 <= centre**2
    if shape == "square":
        return torch.ones(size, size, dtype=torch.bool)
    if shape == "triangle":
        return (x - centre).abs() <= (y + 0.5) / 2  # half-width grows by 1/2 per row: base = size at the bottom
    raise ValueError(f"unknown shape {shape!r}; the shapes world has {', '.join(SHAPES)}")
