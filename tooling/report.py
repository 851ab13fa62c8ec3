"""What every family of ``bench/quality.py`` writes: one manifest entry and one PNG per sample, accuracies with 95%
Wilson intervals, markdown tables and the machine the numbers came from.

Images are quantised to 8 bits (as ComfyUI's Save Image does) before they are judged, so the reported accuracies are
exactly what the shapes-world analyser finds in the written PNG files: anyone can re-check them from the files.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..models.shapes import parse_caption

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


@dataclass(frozen=True)
class SampleRecord:
    """One generated sample as the manifest lists it. ``condition`` is the caption (t2i, and count, whose class is
    the caption's) or the class index (every other mode)."""

    file: str  # relative to the output folder
    family: str
    mode: str  # "c2i", "t2i", "count", "inpaint" or "outpaint"
    condition: int | str
    method: str  # "plain", ARPG's "parallel" or "raster", or the search method
    nfe: int  # guided velocity evaluations actually spent on this sample
    seed: int
    seconds: float  # CPU time spent sampling it: in the summary, not the manifest (it varies run to run)

    def entry(self) -> dict[str, object]:
        if self.mode == "count":  # class conditioning, count caption for the reward
            condition = {"class_index": caption_class(self.condition), "caption": self.condition}
        else:
            condition = {"caption" if self.mode == "t2i" else "class_index": self.condition}
        return {"file": self.file, "family": self.family, "mode": self.mode, **condition,
                "method": self.method, "nfe": self.nfe, "seed": self.seed}


def caption_class(caption: str) -> int:
    """The class index a one-class world caption names."""
    return int(parse_caption(caption).nonzero()[0, 0])


def quantise(images: Tensor) -> Tensor:
    """``[B, H, W, 3]`` in 0..1 -> the same images as 8-bit values ``/ 255`` (ComfyUI's ``clip(255 x)`` then
    truncation), i.e. exactly what a PNG of them holds."""
    return (images.clamp(0, 1) * 255).to(torch.uint8).float() / 255


def to_pil(image: Tensor) -> Image.Image:
    """One image ``[H, W, 3]`` in 0..1 as an 8-bit RGB picture (a quantised image keeps its exact values)."""
    return Image.fromarray((image * 255).round().to(torch.uint8).numpy(), "RGB")


def write_png(path: Path, image: Tensor) -> None:
    """Write one quantised image ``[H, W, 3]`` (values k / 255) as an 8-bit RGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    to_pil(image).save(path)


def read_pngs(out: Path, records: Sequence[SampleRecord]) -> Tensor:
    """The records' images ``[N, H, W, 3]`` as their PNGs hold them: what is judged, whichever process drew them."""
    arrays = []
    for record in records:
        with Image.open(out / record.file) as png:
            arrays.append(np.array(png.convert("RGB")))
    return torch.from_numpy(np.stack(arrays)).float() / 255


def write_manifest(out: Path, records: Sequence[SampleRecord]) -> Path:
    path = out / "manifest.json"
    path.write_text(json.dumps([record.entry() for record in records], indent=1) + "\n")
    return path


def wilson(correct: int, total: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: unlike the normal approximation it stays inside [0, 1] and is
    sensible for the small counts and near-0 / near-1 accuracies of quick runs."""
    if total == 0:
        return 0.0, 1.0
    share, z2 = correct / total, Z_95 * Z_95
    centre = (share + z2 / (2 * total)) / (1 + z2 / total)
    half = Z_95 * math.sqrt(share * (1 - share) / total + z2 / (4 * total * total)) / (1 + z2 / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def proportion(correct: int, total: int) -> str:
    """``"45.8% [39.6, 52.1] (110/240)"``: the share, its 95% interval and the counts behind it."""
    if total == 0:
        return "n/a (0)"
    low, high = wilson(correct, total)
    return f"{correct / total:.1%} [{low:.1%}, {high:.1%}] ({correct}/{total})"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine(workers: int) -> str:
    """Where the numbers came from: timings are only comparable on the same machine with the same number of worker
    processes (each draws with one torch thread)."""
    return (f"{platform.platform()}, {platform.machine()}, {os.cpu_count()} logical cores, torch {torch.__version__}, "
            f"{workers} worker process(es) of 1 thread, Python {sys.version.split()[0]}")
