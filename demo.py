"""See what the built-in tiny PixelFlow models do, without ComfyUI: one PNG grid and the measured accuracies.

    python demo.py [--out demo_out]

Rows of ``demo.png`` (images upscaled 4x, nearest): class-to-image, every class with two seeds; text-to-image for
eight captions (plain sampling, 20 NFE); then the same captions searched in PixelFlow's final stage with the
shape-count reward by Best-of-N and by Rollover Budget Forcing at 8x the plain NFE (160 model calls per image), the
pack's own flow search as the PixelFlow sampler runs it. Accuracies are measured on more seeds than the grid shows
(3 per caption by default); the seeds and search settings are those of ``bench/quality.py``, which measures the
same things at scale.
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

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench"))
from common import load_pack  # noqa: E402

load_pack()
import pixelflow_sampling as pixelflow  # noqa: E402
from quality_report import proportion, to_pil  # noqa: E402

from flowar.models.shapes import CAPTIONS, CLASS_NAMES  # noqa: E402
from flowar.samplers.flow_search_settings import SearchSettings  # noqa: E402
from flowar.train.pixelflow_eval import score, score_counts  # noqa: E402

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
    model, schedule = pixelflow.load_model(args.t2i)
    encoder = pixelflow.load_encoder(args.text_encoder)
    sigma_max, budget = pixelflow.final_stage_sigma(schedule), pixelflow.final_budget(schedule, args.multiplier)
    jobs = [(caption, j * len(CAPTIONS) + CAPTIONS.index(caption)) for j in range(args.seeds)
            for caption in CAPTIONS_SHOWN]
    prompts = [caption for caption, _ in jobs]
    variants = [("text -> image", None)] + [(label, pixelflow.search_settings(name, budget, sigma_max))
                                             for name, label in SEARCHES]
    rows, results = [], []
    for label, settings in variants:

        def sample(caption: str, seed: int, settings: SearchSettings | None = settings) -> tuple[Tensor, int]:
            return pixelflow.sample_caption(model, encoder, schedule, caption, seed, settings)

        images, nfe = sample_many(jobs, sample, clock, label if settings is None
                                  else f"{label} ({pixelflow.describe(settings, sigma_max)})")
        accuracy = score_counts(torch.stack(images), prompts)
        results.append(f"{label} ({nfe[0]} NFE): {proportion(accuracy.correct, accuracy.total)}")
        rows.append((f"{label}\n{nfe[0]} NFE", images[:len(CAPTIONS_SHOWN)]))
    clock.say(f"count accuracy, {len(CAPTIONS_SHOWN)} captions x {args.seeds} seeds (grid: the first seed): "
              + "; ".join(results))
    return rows


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo_out"))
    pixelflow.add_model_arguments(parser)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per caption for the measured accuracies")
    parser.add_argument("--multiplier", type=int, default=8, help="search budget, x the plain NFE")
    args = parser.parse_args(argv)
    clock = Clock()
    classes = class_rows(args, clock)
    texts = text_rows(args, clock)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "demo.png"
    draw_grid([(CLASS_NAMES, classes), (CAPTIONS_SHOWN, texts)]).save(path)
    print("rows: " + "; ".join(label.replace("\n", " ") for label, _ in classes + texts))
    print(f"columns: classes {', '.join(CLASS_NAMES)} | captions {', '.join(CAPTIONS_SHOWN)}")
    print(f"wrote {path} in {clock.elapsed():.0f} s in total", flush=True)
    return path


if __name__ == "__main__":
    main()
