"""See what the pack's built-in tiny models do, without ComfyUI: one PNG grid and the measured accuracies.

    python demo.py [--out demo_out]

Rows of ``demo.png`` (images upscaled 4x, nearest):
- PixelFlow class-to-image, every class with two seeds;
- the counting search: eight count captions ("three blue circles", written above each column); the class-to-image
  model conditioned on the caption's class draws one to four objects at random (plain, 40 NFE), then the shape-count
  reward asks for the caption's count and Best-of-N and Rollover Budget Forcing search across the cascade at 8x the
  plain NFE (320 model calls per image), as the PixelFlow sampler runs them; count accuracies over 2 seeds per
  caption;
- PixelFlow text-to-image for the same captions, plain and searched the same way (once its model is shipped);
- MAR class-to-image, every class; then MAR inpainting: held-out world images of every class (left), their left
  half kept and the right half generated for the class;
- ARPG class-to-image, every class, decoded in parallel (16 steps of 4 tokens) and in raster order (64 steps); then
  zero-shot editing of held-out world images of every class: the centre regenerated (inpainting), and the
  border band regenerated (outpainting).
Seeds, settings and cases are those of ``bench/quality.py``, which measures the same things at scale. A built-in
model that is not shipped (yet) is skipped with a line saying so; a model path given on the command line must exist.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image, ImageDraw
from torch import Tensor


from flowar.tooling import arpg_sampling as arpg
from flowar.tooling import mar_sampling as mar
from flowar.tooling import pixelflow_sampling as pixelflow
from flowar.tooling.report import caption_class, proportion, to_pil

from flowar.models.shapes import CAPTIONS, CLASS_NAMES
from flowar.samplers.pixelflow.schedule import CascadeSchedule
from flowar.samplers.pixelflow.search import CascadeSearchSettings
from flowar.tooling.accuracy import score, score_counts
from flowar.tooling.arpg_eval import EDITS, edit_cases
from flowar.tooling.mar_eval import inpaint_cases

CAPTIONS_SHOWN = ("one red circle", "two blue squares", "three yellow triangles", "four green circles",
                  "one yellow square", "two red triangles", "three blue circles", "four green squares")
SEARCHES = (("bon", "Best-of-N"), ("rbf", "RBF"))
SCALE, GAP, LABEL_WIDTH, HEADER_HEIGHT = 4, 4, 150, 28
CELL = 32 * SCALE
COLUMNS = len(CLASS_NAMES)


def grid_size(rows: int, sections: int) -> tuple[int, int]:
    """(width, height) of a grid of ``rows`` image rows in ``sections`` headed sections."""
    return LABEL_WIDTH + COLUMNS * (CELL + GAP), sections * HEADER_HEIGHT + rows * (CELL + GAP)


def draw_grid(sections: Sequence[tuple[Sequence[str], Sequence[tuple[str, Sequence[Tensor]]]]]) -> Image.Image:
    """Sections of (column labels, rows of (row label, images ``[32, 32, 3]``)) drawn top to bottom."""
    rows = sum(len(section_rows) for _, section_rows in sections)
    canvas = Image.new("RGB", grid_size(rows, len(sections)), (32, 32, 32))
    draw = ImageDraw.Draw(canvas)
    top = 0
    for columns, section_rows in sections:
        for k, label in enumerate(columns):
            draw.multiline_text((LABEL_WIDTH + k * (CELL + GAP), top + 2), label.replace(" ", "\n", 1), spacing=1)
        top += HEADER_HEIGHT
        for label, images in section_rows:
            draw.multiline_text((4, top + CELL // 2 - 12), label, spacing=2)
            for k, image in enumerate(images):
                canvas.paste(to_pil(image).resize((CELL, CELL), Image.NEAREST), (LABEL_WIDTH + k * (CELL + GAP), top))
            top += CELL + GAP
    return canvas


class Clock:
    """Progress lines stamped with the seconds since the demo started."""

    def __init__(self) -> None:
        self.began = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.began

    def say(self, text: str) -> None:
        print(f"[{self.elapsed():5.0f} s] {text}", flush=True)


def sample_many(jobs: Sequence[tuple[int | str, int]], sample: Callable[[int | str, int], tuple[Tensor, int]],
                clock: Clock, what: str) -> tuple[list[Tensor], list[int]]:
    images, nfe = [], []
    for condition, seed in jobs:
        image, spent = sample(condition, seed)
        images.append(image)
        nfe.append(spent)
    clock.say(f"{what}: {len(jobs)} images, {sum(nfe) / len(nfe):.0f} NFE each")
    return images, nfe


def class_rows(args: argparse.Namespace, clock: Clock) -> list[tuple[str, list[Tensor]]]:
    model, schedule = pixelflow.load_model(args.c2i)
    rows = []
    labels = torch.arange(COLUMNS)
    for row in range(2):
        jobs = [(label, row * COLUMNS + label) for label in range(COLUMNS)]  # the bench's seeds
        images, _ = sample_many(jobs, lambda label, seed: pixelflow.sample_class(model, schedule, label, seed), clock,
                                f"class-to-image, seed row {row + 1}")
        rows.append((f"class -> image\nseeds {row * COLUMNS}-{row * COLUMNS + COLUMNS - 1}", images))
    shown = torch.stack([image for _, images in rows for image in images])
    accuracy = score(shown, torch.cat([labels, labels]))
    clock.say(f"class accuracy of the {accuracy.total} images shown: {proportion(accuracy.correct, accuracy.total)}")
    return rows


def text_rows(args: argparse.Namespace, clock: Clock) -> list[tuple[str, list[Tensor]]]:
    """The text-to-image model on the shown captions, plain and searched by the shape-count reward."""
    model, schedule = pixelflow.load_model(args.t2i)
    encoder = pixelflow.load_encoder(args.text_encoder)

    def sample(caption: str, seed: int, settings: CascadeSearchSettings | None) -> tuple[Tensor, int]:
        return pixelflow.sample_caption(model, encoder, schedule, caption, seed, settings)

    return searched_rows(args, clock, schedule, "text -> image", sample)


def count_rows(args: argparse.Namespace, clock: Clock) -> list[tuple[str, list[Tensor]]]:
    """The counting experiment: the class-to-image model conditioned on each caption's class (it cannot be told a
    count), plain and with the shape-count reward asking for the caption's count."""
    model, schedule = pixelflow.load_model(args.c2i)

    def sample(caption: str, seed: int, settings: CascadeSearchSettings | None) -> tuple[Tensor, int]:
        return pixelflow.sample_count(model, schedule, caption_class(caption), caption, seed, settings)

    return searched_rows(args, clock, schedule, "class -> image", sample)


def searched_rows(args: argparse.Namespace, clock: Clock, schedule: CascadeSchedule, plain_label: str,
                  sample: Callable[[str, int, CascadeSearchSettings | None], tuple[Tensor, int]]
                  ) -> list[tuple[str, list[Tensor]]]:
    """Rows of the shown captions (the bench's seeds), plain then each search at ``--multiplier`` x the plain NFE;
    the count accuracy of every row over ``--seeds`` seeds per caption is printed."""
    jobs = [(caption, j * len(CAPTIONS) + CAPTIONS.index(caption)) for j in range(args.seeds)
            for caption in CAPTIONS_SHOWN]
    prompts = [caption for caption, _ in jobs]
    variants = [(plain_label, None)] + [(label, pixelflow.search_settings(name, args.multiplier, schedule))
                                        for name, label in SEARCHES]
    rows, results = [], []
    for label, settings in variants:
        images, nfe = sample_many(jobs, lambda caption, seed, settings=settings: sample(caption, seed, settings),
                                  clock, label if settings is None
                                  else f"{label} ({pixelflow.describe(settings, schedule)})")
        accuracy = score_counts(torch.stack(images), prompts)
        results.append(f"{label} ({nfe[0]} NFE): {proportion(accuracy.correct, accuracy.total)}")
        rows.append((f"{label}\n{nfe[0]} NFE", images[:len(CAPTIONS_SHOWN)]))
    clock.say(f"count accuracy, {len(CAPTIONS_SHOWN)} captions x {args.seeds} seeds (grid: the first seed): "
              + "; ".join(results))
    return rows


def mar_rows(args: argparse.Namespace, clock: Clock) -> list[tuple[str, list[Tensor]]]:
    model, vae = mar.load_models(args.mar, args.mar_vae)
    labels = torch.arange(COLUMNS)
    generated, nfe = sample_many([(label, label) for label in range(COLUMNS)],  # the bench's seeds
                                 lambda label, seed: mar.sample_class(model, vae, label, seed), clock,
                                 "MAR class-to-image")
    cases = inpaint_cases(COLUMNS)  # the bench's first cases: one per class, case j has seed j
    completed, _ = sample_many([(j, j) for j in range(COLUMNS)],
                               lambda j, seed: mar.sample_inpaint(model, vae, cases[j], seed), clock, "MAR inpainting")
    for what, images in (("MAR class accuracy", generated), ("MAR inpainting class accuracy", completed)):
        accuracy = score(torch.stack(images), labels)
        clock.say(f"{what} of the {accuracy.total} images shown: {proportion(accuracy.correct, accuracy.total)}")
    originals = [case.image.float() / 255 for case in cases]
    return [(f"MAR class -> image\n{nfe[0]} iterations", generated),
            ("inpainting: world\nimage (left kept)", originals), ("MAR inpainting\nright half new", completed)]


def arpg_rows(args: argparse.Namespace, clock: Clock) -> list[tuple[str, list[Tensor]]]:
    model, vq = arpg.load_models(args.arpg, args.arpg_vq)
    labels = torch.arange(COLUMNS)
    rows = []
    for method in arpg.METHODS:
        images, nfe = sample_many([(label, label) for label in range(COLUMNS)],  # the bench's seeds
                                  lambda label, seed, method=method: arpg.sample_class(model, vq, label, seed, method),
                                  clock, f"ARPG class-to-image, {method}")
        rows.append((f"ARPG {method}\n{nfe[0]} steps", images))
    cases = edit_cases(COLUMNS)  # the bench's first cases: one per class, case j has seed j
    rows.append(("editing: world\nimage", [case.image.float() / 255 for case in cases]))
    for edit in EDITS:
        images, _ = sample_many([(j, j) for j in range(COLUMNS)],
                                lambda j, seed, edit=edit: arpg.sample_edit(model, vq, cases[j], edit, seed), clock,
                                f"ARPG {edit}")
        rows.append((f"ARPG {edit}\n" + ("centre new" if edit == "inpaint" else "border new"), images))
    for label, images in rows[:2] + rows[3:]:
        accuracy = score(torch.stack(images), labels)
        clock.say(f"{label.splitlines()[0]} class accuracy of the {accuracy.total} images shown: "
                  f"{proportion(accuracy.correct, accuracy.total)}")
    return rows


def is_missing_default(parser: argparse.ArgumentParser, args: argparse.Namespace, names: Sequence[str]) -> bool:
    """Whether a built-in model the demo would use by default is not shipped (an explicit path must exist)."""
    return any(getattr(args, name) == parser.get_default(name) and not getattr(args, name).exists()
               for name in names)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    pixelflow.add_model_arguments(parser)
    mar.add_model_arguments(parser)
    arpg.add_model_arguments(parser)
    parser.add_argument("--seeds", type=int, default=2, help="seeds per caption for the measured count accuracies")
    parser.add_argument("--multiplier", type=int, default=8, help="search budget, x the plain NFE")
    args = parser.parse_args(argv)
    clock = Clock()
    parts = (("PixelFlow class-to-image", ("c2i",), CLASS_NAMES, class_rows),
             ("PixelFlow counting search", ("c2i",), CAPTIONS_SHOWN, count_rows),
             ("PixelFlow text-to-image", ("t2i", "text_encoder"), CAPTIONS_SHOWN, text_rows),
             ("MAR", ("mar", "mar_vae"), CLASS_NAMES, mar_rows),
             ("ARPG", ("arpg", "arpg_vq"), CLASS_NAMES, arpg_rows))
    sections = []
    for title, names, columns, rows in parts:
        if is_missing_default(parser, args, names):
            clock.say(f"{title}: skipped, its built-in model is not shipped yet")
            continue
        sections.append((columns, rows(args, clock)))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "demo.png"
    draw_grid(sections).save(path)
    print("rows: " + "; ".join(label.replace("\n", " ") for _, rows in sections for label, _ in rows))
    print("columns: " + " | ".join(", ".join(columns) for columns, _ in sections))
    print(f"wrote {path} in {clock.elapsed():.0f} s in total", flush=True)
    return path


if __name__ == "__main__":
    main()
