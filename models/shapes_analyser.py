"""Finds the objects of shapes-world images (:mod:`.shapes`): colour segmentation, connected components and shape
from geometry, for a whole IMAGE batch at once in plain torch (no scipy or OpenCV).

It backs the shape-count reward and measures the built-in models, so it is strict: an object counts as a circle,
square or triangle only when its geometry fits that shape as the world draws it; anything else is reported with
shape "other" (and costs in the reward) rather than guessed.

1. Colour: each pixel takes the nearest of black and the 4 palette colours (RGB in 0..1); it belongs to an object
   when that is a palette colour within :data:`COLOUR_RADIUS` (so noise of generated images is tolerated, while
   colours far from every palette entry, e.g. grey or white, stay background).
2. Components: pixels of one colour connected through their 8 neighbours (objects are drawn at least 2 pixels
   apart), labelled by propagating the largest pixel index through 3x3 max-pooling until nothing changes.
   Components smaller than :data:`MIN_AREA_FRACTION` of the image (12 pixels at 32x32; the smallest drawn object,
   a triangle of size 7, has 31) are specks and ignored.
3. Shape, from the component's bounding box (height h, width w) and pixels: roughly square boxes only
   (:data:`ASPECT_RANGE`); fill = area / (h * w) is 1 for squares, 0.76-0.85 for discs, 0.59-0.63 for triangles;
   the centroid's depth in the box / h is 0.5 for squares and discs and 0.62-0.64 for upright triangles (their mass
   sits low). The thresholds lie midway between the drawn values.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .shapes import COLOURS, PALETTE, SHAPES, ShapeObject

COLOUR_RADIUS = 0.45  # RGB distance (0..1 scale) to a palette colour; the palette is >= 0.67 apart, black >= 0.89
MIN_AREA_FRACTION = 12 / 1024  # smaller components are specks
ASPECT_RANGE = (0.75, 4 / 3)  # h / w of a recognisable object
SQUARE_FILL = 0.92  # fill at least this: square (discs reach 0.85)
DISC_FILL = (0.68, SQUARE_FILL)  # disc fill range (drawn 0.76-0.85)
TRIANGLE_FILL = (0.5, 0.72)  # triangle fill range (drawn 0.59-0.63)
LOW_CENTROID = 0.5625  # centroid depth / h at least this: upright triangle (drawn 0.62-0.64; symmetric shapes 0.5)
OTHER = len(SHAPES)  # shape index of components that fit no shape


@dataclass(frozen=True)
class Components:
    """The objects found in a batch, one row per object, sorted by image, then top, then left."""

    image: Tensor  # (N,) int64 index in the batch
    colour: Tensor  # (N,) int64 index in COLOURS
    shape: Tensor  # (N,) int64 index in SHAPES, or OTHER
    bbox: Tensor  # (N, 4) int64 x0, y0, x1, y1 (end exclusive)
    area: Tensor  # (N,) int64 pixels


def colour_masks(images: Tensor) -> Tensor:
    """IMAGE ``[B, H, W, C]`` in 0..1 -> ``(B, 4, H, W)`` bool: the pixels of each palette colour."""
    pixels = images[..., :3].float().clamp(0, 1)  # (B, H, W, 3)
    palette = torch.tensor(((0, 0, 0), *PALETTE), dtype=torch.float32, device=pixels.device) / 255  # (5, 3)
    distance = (pixels[..., None, :] - palette).norm(dim=-1)  # (B, H, W, 5)
    nearest = distance.min(dim=-1)
    is_colour = (nearest.indices[..., None] == torch.arange(1, 5, device=pixels.device))  # (B, H, W, 4)
    return (is_colour & (nearest.values[..., None] < COLOUR_RADIUS)).permute(0, 3, 1, 2)


def label_components(masks: Tensor) -> Tensor:
    """``(B, K, H, W)`` bool -> ``(B, K, H, W)`` int64 labels: 0 off the masks, else 1 + the flat index of the
    component's last pixel (unique across the batch), 8-connectivity within each mask."""
    seeds = torch.arange(1, masks.numel() + 1, dtype=torch.float64, device=masks.device).view(masks.shape)
    on = masks.to(torch.float64)
    labels = seeds * on  # float64 stays exact for any realistic batch (indices < 2**53)
    flat = labels.flatten(0, 1)[:, None]  # (B*K, 1, H, W)
    while True:
        grown = F.max_pool2d(flat, kernel_size=3, stride=1, padding=1) * on.flatten(0, 1)[:, None]
        if torch.equal(grown, flat):
            return flat.view(masks.shape).long()
        flat = grown


def classify(height: Tensor, width: Tensor, area: Tensor, centroid_y: Tensor) -> Tensor:
    """Shape index (or :data:`OTHER`) of components ``(N,)`` from box height and width, pixel count and the mean
    pixel-centre depth below the box top."""
    fill = area / (height * width)
    aspect = height / width
    low = centroid_y / height >= LOW_CENTROID
    boxy = (aspect >= ASPECT_RANGE[0]) & (aspect <= ASPECT_RANGE[1])
    square = boxy & (fill >= SQUARE_FILL)
    circle = boxy & ~low & (fill >= DISC_FILL[0]) & (fill < DISC_FILL[1])
    triangle = boxy & low & (fill >= TRIANGLE_FILL[0]) & (fill <= TRIANGLE_FILL[1])
    shape = torch.full_like(area, OTHER, dtype=torch.int64)
    shape[circle] = SHAPES.index("circle")
    shape[square] = SHAPES.index("square")
    shape[triangle] = SHAPES.index("triangle")
    return shape


def find_objects(images: Tensor) -> Components:
    """The objects of IMAGE ``[B, H, W, C]`` in 0..1 (any size; the speck threshold scales with the area)."""
    masks = colour_masks(images)  # (B, 4, H, W)
    batch, colours, height, width = masks.shape
    labels = label_components(masks)
    where = labels.nonzero()  # (P, 4): b, colour, y, x of every object pixel
    roots, member = torch.unique(labels[labels > 0], return_inverse=True)  # sorted like `where` (row-major)
    count = roots.numel()
    ys, xs = where[:, 2], where[:, 3]
    area = torch.bincount(member, minlength=count)  # (N,)

    def extreme(values: Tensor, reduce: str) -> Tensor:
        start = values.new_full((count,), height * width if reduce == "amin" else -1)
        return start.scatter_reduce(0, member, values, reduce=reduce)

    y0, y1, x0, x1 = extreme(ys, "amin"), extreme(ys, "amax") + 1, extreme(xs, "amin"), extreme(xs, "amax") + 1
    centroid_y = torch.bincount(member, weights=(ys - y0[member]).double() + 0.5, minlength=count) / area
    shape = classify((y1 - y0).double(), (x1 - x0).double(), area.double(), centroid_y)
    image, colour = (roots - 1) // (colours * height * width), (roots - 1) // (height * width) % colours
    keep = area >= MIN_AREA_FRACTION * height * width
    order = torch.argsort((image * (height + 1) + y0) * (width + 1) + x0, stable=True)
    order = order[keep[order]]
    bbox = torch.stack([x0, y0, x1, y1], dim=-1)  # (N, 4)
    return Components(image[order], colour[order], shape[order], bbox[order], area[order])


def class_counts(images: Tensor) -> Tensor:
    """Objects per class ``(B, 13)`` int64: the 12 classes of the world, then the objects that fit no shape."""
    found = find_objects(images)
    classes = torch.where(found.shape == OTHER, len(SHAPES) * len(COLOURS), found.shape * len(COLOURS) + found.colour)
    counts = torch.zeros(images.shape[0], len(SHAPES) * len(COLOURS) + 1, dtype=torch.int64, device=classes.device)
    return counts.index_put_((found.image, classes), torch.ones_like(classes), accumulate=True)


def analyse(images: Tensor) -> list[list[ShapeObject]]:
    """The objects of each image of IMAGE ``[B, H, W, C]``, top to bottom then left to right."""
    found = find_objects(images)
    objects: list[list[ShapeObject]] = [[] for _ in range(images.shape[0])]
    for image, colour, shape, bbox, area in zip(found.image.tolist(), found.colour.tolist(), found.shape.tolist(),
                                                found.bbox.tolist(), found.area.tolist()):
        objects[image].append(ShapeObject((*SHAPES, "other")[shape], COLOURS[colour], tuple(bbox), area))
    return objects
