"""Accuracy of the built-in tiny ARPG on the shapes world, sampled with the pack's own ARPG sampler.

Settings (:data:`PARALLEL`): the built-in's own sampler settings, which its workflows set in the sampler node: 16
decoding steps (four tokens per step on its 8x8 grid, the ratio of the paper's 64 steps over 256 tokens), the arccos
schedule, cfg 2 with the linear schedule, temperature 0.7, no top-k / top-p. The node's defaults are the official
ones (cfg 4, temperature 1), tuned for the 256-token ImageNet models; on the tiny model, a sweep over fixed seeds
found that a cooler temperature and a weaker guidance make whole shapes more often (temperature 1 with cfg 4 gave
about half the accuracy). :data:`RASTER` is the sequential baseline: one token per step in reading order, at its own
best temperature (1; cooling a raster decode lowers its accuracy, as one early wrong token is never revisited).

Class-to-image: as for PixelFlow (:func:`.accuracy.score`): correct when the analyser finds 1 to 4 objects,
all of the requested shape and colour. Editing (zero-shot, :data:`EDITS`): held-out world images of the requested
class with an object reaching into the centre 16x16 pixels; inpainting regenerates the centre 4x4 tokens (the Region
Mask node's centre 0.5), outpainting regenerates the border ring one token wide around the kept centre 6x6 (border
0.25: the canvas grown by an eighth of its side each way, as the release workflow pads 192 px by 32 to 256); correct
by the same measure (the completed image shows one class, the requested one), and the known tokens must come back
unchanged.

Run from the repository root: ``python -m flowar.tooling.arpg_eval builtin/arpg/shapes-c2i.pt
--vq builtin/vq/shapes-vq.pt --samples 240 [--raster] [--edit 240]``; ``--curve`` takes the snapshots folder of a
training run instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor

from ..models.arpg import ARPGTransformer
from ..models.arpg_release import load_arpg, load_vq
from ..models.shapes import CANVAS, CLASS_NAMES
from ..models.vq16 import VQModel
from ..samplers.arpg.decode import DecodeSettings, sample_arpg
from ..samplers.arpg.noise import SeededARPGNoise
from ..samplers.common import KnownTokens
from ..samplers.pixels import pixels_to_image
from .accuracy import Accuracy, format_accuracy, learning_curve, score
from .world import ShapesSample, generate, image_batch

BUILTIN_STEPS = 16  # the built-in's default parallel step count: 4 of its 64 tokens per step
PARALLEL = DecodeSettings(steps=BUILTIN_STEPS, guidance=2.0, temperature=0.7)  # the built-in's settings
RASTER = replace(PARALLEL, schedule="raster", temperature=1.0)
EDIT_SEED = 6 * 10**11  # world seeds of the editing cases start here (far from any training run's)
CENTRE = (CANVAS // 4, 3 * CANVAS // 4)  # the centre block's pixel rows / columns (the middle half)
EDITS = ("inpaint", "outpaint")


def sample_images(model: ARPGTransformer, vq: VQModel, labels: Tensor, seed: int,
                  settings: DecodeSettings = PARALLEL, known: KnownTokens | None = None) -> tuple[Tensor, Tensor]:
    """IMAGE ``[B, 32, 32, 3]`` in 0..1 and the token grid ``(B, h, w)`` behind it, one seeded run for ``labels``
    ``[B]`` (``known`` keeps those tokens: editing)."""
    grid = model.config.grid_size
    with torch.no_grad():
        tokens = sample_arpg(model, labels, grid=(grid, grid), settings=settings, draws=SeededARPGNoise(seed),
                             device=torch.device("cpu"), known=known)
        return pixels_to_image(vq.decode_indices(tokens)), tokens


def class_accuracy(model: ARPGTransformer, vq: VQModel, *, samples: int, settings: DecodeSettings = PARALLEL,
                   seed: int = 0, batch: int = 24) -> Accuracy:
    """Sample ``samples`` images, classes in turn, batch ``k`` with seed ``seed + k``, and score them."""
    labels = torch.arange(samples) % len(CLASS_NAMES)
    images = torch.cat([sample_images(model, vq, chunk, seed + k, settings)[0]
                        for k, chunk in enumerate(labels.split(batch))])
    return score(images, labels)


def known_positions(edit: str, grid: int) -> Tensor:
    """``(grid, grid)`` bool, True where the tokens are kept: all but the centre half of each side (inpaint), or
    all but the outer eighth of each side (outpaint)."""
    if edit not in EDITS:
        raise ValueError(f"unknown edit {edit!r}; choose one of {', '.join(EDITS)}")
    margin = grid // 4 if edit == "inpaint" else grid // 8
    inner = slice(margin, grid - margin)
    block = torch.zeros(grid, grid, dtype=torch.bool)
    block[inner, inner] = True
    return ~block if edit == "inpaint" else block


def edit_cases(count: int) -> list[ShapesSample]:
    """``count`` held-out world images, classes in turn, each with an object reaching into the centre 16x16 px."""
    low, high = CENTRE
    cases, seed = [], EDIT_SEED
    while len(cases) < count:
        sample = generate(seed)
        wanted = len(cases) % len(CLASS_NAMES)
        if sample.class_index == wanted and any(x0 < high and x1 > low and y0 < high and y1 > low
                                                for x0, y0, x1, y1 in (obj.bbox for obj in sample.objects)):
            cases.append(sample)
        seed += 1
    return cases


def edit_input(vq: VQModel, images: Tensor, edit: str) -> KnownTokens:
    """The tokens of IMAGE ``[B, H, W, 3]`` with the positions ``edit`` keeps marked known: the editing input."""
    with torch.no_grad():
        tokens = vq.encode_indices(images.permute(0, 3, 1, 2) * 2 - 1)  # (B, h, w)
    return KnownTokens.from_grid(tokens, known_positions(edit, tokens.shape[-1]))


def edit_accuracy(model: ARPGTransformer, vq: VQModel, edit: str, *, cases: int, seed: int = 0, batch: int = 24
                  ) -> tuple[Accuracy, int]:
    """Complete ``cases`` edits (:func:`edit_cases`), score them; also how many kept every known token."""
    samples = edit_cases(cases)
    labels = torch.tensor([sample.class_index for sample in samples])
    images, unchanged = [], 0
    for k in range(0, cases, batch):
        known = edit_input(vq, image_batch(samples[k:k + batch]), edit)
        completed, tokens = sample_images(model, vq, labels[k:k + batch], seed + k // batch, known=known)
        images.append(completed)
        same = (tokens.flatten(1) == known.tokens) | ~known.known  # (B, L)
        unchanged += int(same.all(dim=1).sum())
    return score(torch.cat(images), labels), unchanged


def snapshot_curve(snapshots: Path, vq: VQModel, samples: int) -> str:
    """Class accuracy of every snapshot of a training run against its steps and minutes (a markdown table)."""

    def judge(folder: Path) -> tuple[dict, Accuracy]:
        path = folder / "model.pt"
        return torch.load(path, weights_only=True)["training"], class_accuracy(load_arpg(path)[0], vq,
                                                                                samples=samples)

    return learning_curve(snapshots, judge)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="the ARPG checkpoint, or with --curve a snapshots folder")
    parser.add_argument("--vq", type=Path, required=True, help="the tiny VQ tokenizer checkpoint")
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--raster", action="store_true", help="also the raster (sequential) mode")
    parser.add_argument("--edit", type=int, default=0, metavar="N", help="also N inpainting and N outpainting cases")
    parser.add_argument("--curve", action="store_true", help="CHECKPOINT is a snapshots folder: evaluate each")
    args = parser.parse_args(argv)
    vq, _ = load_vq(args.vq)
    if args.curve:
        print(snapshot_curve(args.checkpoint, vq, args.samples))
        return
    model, _ = load_arpg(args.checkpoint)
    print(f"parallel ({BUILTIN_STEPS} steps): " + format_accuracy(class_accuracy(model, vq, samples=args.samples)),
          flush=True)
    if args.raster:
        print("raster: " + format_accuracy(class_accuracy(model, vq, samples=args.samples, settings=RASTER)),
              flush=True)
    for edit in EDITS if args.edit else ():
        accuracy, unchanged = edit_accuracy(model, vq, edit, cases=args.edit)
        print(format_accuracy(accuracy, edit) + f"; known tokens unchanged in {unchanged}/{accuracy.total}",
              flush=True)


if __name__ == "__main__":
    main()
