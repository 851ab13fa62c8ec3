"""How well images of the shapes world match what was asked, judged by the analyser (:mod:`models.shapes_analyser`):
class accuracy for class-conditional models (PixelFlow, MAR, ARPG) and count accuracy for captions (issue 8's
measures), overall and per shape.

Class-to-image: a sample is correct when the analyser finds 1 to 4 objects and every one has the requested shape and
colour. Text-to-image (count accuracy): when it finds exactly the caption's number of the caption's class and
nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..models.rewards.shapes_count import ShapesCountReward
from ..models.shapes import COLOURS, COUNTS, SHAPES, class_parts, parse_caption
from ..models.shapes_analyser import analyse


@dataclass(frozen=True)
class Accuracy:
    """Share of correct samples overall and per shape, with the counts behind them."""

    correct: int
    total: int
    per_shape: dict[str, tuple[int, int]]  # shape -> (correct, total)

    @property
    def overall(self) -> float:
        return self.correct / self.total


def score(images: torch.Tensor, labels: torch.Tensor) -> Accuracy:
    """Judge ``images`` ``[B, 32, 32, 3]`` against their requested classes ``labels`` ``[B]`` with the analyser:
    right when 1 to 4 objects are found and all have the requested shape and colour."""
    right = []
    for objects, label in zip(analyse(images), labels.tolist()):
        shape, colour = class_parts(label)
        right.append(len(objects) in COUNTS and all(o.shape == shape and o.colour == colour for o in objects))
    return tally(right, [class_parts(label)[0] for label in labels.tolist()])


def score_counts(images: torch.Tensor, prompts: Sequence[str]) -> Accuracy:
    """Judge ``images`` against captions: right when the analyser finds exactly the requested number of the
    requested class and nothing else (the shape-count reward's exact mode)."""
    exact = ShapesCountReward("exact")
    right = [bool(exact.score(image[None], prompt)[0]) for image, prompt in zip(images, prompts)]
    return tally(right, [parse_shape(prompt) for prompt in prompts])


def parse_shape(prompt: str) -> str:
    """The shape a world caption asks for."""
    return SHAPES[int(parse_caption(prompt).nonzero()[0, 0]) // len(COLOURS)]


def tally(right: Sequence[bool], shapes: Sequence[str]) -> Accuracy:
    per_shape = {shape: [0, 0] for shape in SHAPES}
    for ok, shape in zip(right, shapes):
        per_shape[shape][0] += ok
        per_shape[shape][1] += 1
    return Accuracy(sum(right), len(right), {shape: (c, t) for shape, (c, t) in per_shape.items()})


def format_accuracy(accuracy: Accuracy, measure: str = "class") -> str:
    shapes = ", ".join(f"{shape} {c / t:.0%} ({c}/{t})" for shape, (c, t) in accuracy.per_shape.items() if t)
    return f"{measure} accuracy {accuracy.overall:.1%} ({accuracy.correct}/{accuracy.total}); {shapes}"


def learning_curve(snapshots: Path, judge: Callable[[Path], tuple[dict, Accuracy]]) -> str:
    """A markdown table of accuracy against training steps and minutes, one row per snapshot folder (``step*/``, as
    ``--snapshots`` of the training scripts writes them); ``judge(folder)`` gives a snapshot's training provenance
    and its accuracy. Rows are printed as they come (each takes a sampling run)."""
    rows = ["| steps | minutes | accuracy | per shape |", "|---|---|---|---|"]
    for folder in sorted(snapshots.glob("step*")):
        provenance, accuracy = judge(folder)
        shapes = ", ".join(f"{shape} {c / t:.0%}" for shape, (c, t) in accuracy.per_shape.items() if t)
        rows.append(f"| {provenance.get('steps', '?')} | {provenance.get('minutes', '?')} | "
                    f"{accuracy.overall:.1%} ({accuracy.correct}/{accuracy.total}) | {shapes} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)
