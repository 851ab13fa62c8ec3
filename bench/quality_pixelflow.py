"""PixelFlow family of ``bench/quality.py``: class accuracy of the class-to-image model (``c2i``); the counting
experiment (``count``): the class-to-image model conditioned on a caption's class while the shape-count reward asks
for the caption's count, plain and with each reward search at each NFE budget (x the plain NFE, matched exactly per
sample); and the same count accuracy for the text-to-image model (``t2i``, conditioned on the caption itself). How
samples are drawn, counted and searched is in ``flowar.tooling.pixelflow_sampling`` (shared with ``demo.py``).

Seeds: sample ``j`` of class ``k`` has seed ``12 j + k``, sample ``j`` of caption ``c`` seed ``48 j + c`` for every
method, so plain and searched samples are paired (each search's first particle is its plain twin).

Planning, drawing and judging are apart so that worker processes can share the drawing: ``plan`` lists every sample
as a :class:`Job` in the manifest's order, ``generate`` draws any slice of that list in whichever process gets it,
and ``report`` judges the written PNGs once all are drawn.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from flowar.models.shapes import CAPTIONS, CLASS_NAMES, SHAPES
from flowar.samplers.pixelflow.defaults import CFG, STEPS_PER_STAGE
from flowar.samplers.pixelflow.schedule import CascadeSchedule
from flowar.samplers.pixelflow.search import CascadeSearchSettings
from flowar.tooling.accuracy import Accuracy, score, score_counts
from flowar.tooling.pixelflow_sampling import SEARCH_METHODS, add_model_arguments, describe, load_encoder, \
    load_model, plain_nfe, sample_caption, sample_class, sample_count, search_settings
from flowar.tooling.report import SampleRecord, caption_class, markdown_table, proportion, read_pngs, write_png

Group = tuple[str, int]  # (method, multiplier): one row of a mode's table
MODES = ("c2i", "count", "t2i")


def add_arguments(parser: argparse._ArgumentGroup) -> None:
    add_model_arguments(parser)
    parser.add_argument("--per-caption", type=int, default=5,
                        help="t2i samples per caption: 5 x 48 captions = 240 per method and budget")
    parser.add_argument("--count-seeds", type=int, default=2,
                        help="count samples per caption: 2 x 48 captions = 96 per method and budget (about 20 "
                             "minutes on 2 cores for every row)")
    parser.add_argument("--captions", type=int, default=len(CAPTIONS),
                        help="how many of the 48 captions, evenly spread (quick runs)")
    parser.add_argument("--multipliers", type=csv(int), default=[2, 4, 8],
                        help="search budgets, x the plain NFE (at least 2: a search chooses among 2 or more)")
    parser.add_argument("--methods", type=csv(str), default=list(SEARCH_METHODS),
                        help=f"search methods: {', '.join(SEARCH_METHODS)}")


def csv(kind: type) -> Callable[[str], list]:
    return lambda text: [kind(part) for part in text.split(",") if part]


# -------------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Job:
    """One sample to draw. ``multiplier`` is its NFE budget, x the plain NFE (1 for plain sampling);
    ``condition`` the class index (c2i) or the caption (t2i)."""

    mode: str
    method: str  # "plain" or a key of SEARCH_METHODS
    multiplier: int
    condition: int | str
    seed: int


def plan(args: argparse.Namespace) -> list[Job]:
    """Every sample of the run in the manifest's order; the options are checked first, so a bad one fails before
    any model is loaded or worker started."""
    unknown = [m for m in args.methods if m not in SEARCH_METHODS] + [m for m in args.modes if m not in PLANS]
    if unknown:
        raise SystemExit(f"unknown method or mode {', '.join(unknown)}")
    if not 1 <= args.captions <= len(CAPTIONS) or min(args.per_class, args.per_caption, args.count_seeds) < 1:
        raise SystemExit(f"--captions takes 1 to {len(CAPTIONS)}; sample counts must be >= 1")
    if min(args.multipliers) < 2:
        raise SystemExit("--multipliers must be >= 2 (a search needs at least two candidates)")
    return [job for mode in args.modes for job in PLANS[mode](args)]


def plan_c2i(args: argparse.Namespace) -> list[Job]:
    """``per_class`` samples of each class; sample ``j`` of class ``k`` has seed ``12 j + k``."""
    return [Job("c2i", "plain", 1, label, j * len(CLASS_NAMES) + label)
            for j in range(args.per_class) for label in range(len(CLASS_NAMES))]


def plan_t2i(args: argparse.Namespace) -> list[Job]:
    """``per_caption`` samples per caption, plain and with each search at each budget."""
    return caption_jobs(args, "t2i", args.per_caption)


def plan_count(args: argparse.Namespace) -> list[Job]:
    """``count_seeds`` samples per caption of the counting experiment, plain and searched."""
    return caption_jobs(args, "count", args.count_seeds)


def caption_jobs(args: argparse.Namespace, mode: str, per_caption: int) -> list[Job]:
    """Sample ``j`` of caption ``c`` has seed ``48 j + c`` whatever the method (paired comparisons)."""
    groups = [("plain", 1)] + [(method, k) for k in args.multipliers for method in args.methods]
    return [Job(mode, method, k, caption, j * len(CAPTIONS) + CAPTIONS.index(caption))
            for method, k in groups for j in range(per_caption) for caption in captions(args)]


def captions(args: argparse.Namespace) -> list[str]:
    """``args.captions`` of the 48 captions, evenly spread."""
    stride = len(CAPTIONS) / args.captions
    return [CAPTIONS[int(k * stride)] for k in range(args.captions)]


PLANS = {"c2i": plan_c2i, "count": plan_count, "t2i": plan_t2i}


# -------------------------------------------------------------------------------------------------- draw


def settings(schedule: CascadeSchedule, method: str, multiplier: int) -> CascadeSearchSettings | None:
    """The search of ``method`` at ``multiplier`` x the plain NFE; None for plain sampling."""
    return None if method == "plain" else search_settings(method, multiplier, schedule)


class Drawer:
    """Draws jobs in one process with the models of the run's modes, loaded once."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.c2i = load_model(args.c2i) if {"c2i", "count"} & set(args.modes) else None
        self.t2i = load_model(args.t2i) if "t2i" in args.modes else None
        self.encoder = load_encoder(args.text_encoder) if "t2i" in args.modes else None

    def draw(self, job: Job) -> tuple[Tensor, int]:
        """The job's quantised image ``[32, 32, 3]`` and the NFE spent on it."""
        if job.mode == "c2i":
            return sample_class(*self.c2i, job.condition, job.seed)
        if job.mode == "count":
            model, schedule = self.c2i
            return sample_count(model, schedule, caption_class(job.condition), job.condition, job.seed,
                                settings(schedule, job.method, job.multiplier))
        model, schedule = self.t2i
        return sample_caption(model, self.encoder, schedule, job.condition, job.seed,
                              settings(schedule, job.method, job.multiplier))

    def file(self, job: Job) -> str:
        """The PNG's path relative to the output folder: ``pixelflow/<mode>/<method>_<NFE>/<condition>_s<seed>``."""
        if job.mode == "c2i":
            return f"pixelflow/c2i/plain/{CLASS_NAMES[job.condition].replace(' ', '_')}_s{job.seed}.png"
        schedule = (self.c2i if job.mode == "count" else self.t2i)[1]
        folder = f"{job.method}_{plain_nfe(schedule) * job.multiplier}"
        return f"pixelflow/{job.mode}/{folder}/{job.condition.replace(' ', '_')}_s{job.seed}.png"


def generate(args: argparse.Namespace, jobs: Sequence[Job], out: Path, label: str) -> list[SampleRecord]:
    """Draw ``jobs`` one by one (batch 1, so each seed alone reproduces its sample) and write their PNGs; the records
    carry the CPU seconds spent sampling each image (the process draws with one thread, so that is the sampling's
    cost whatever else the machine runs). ``label`` names the worker in the progress lines."""
    drawer, records = Drawer(args), []
    every = max(1, len(jobs) // 20)
    for done, job in enumerate(jobs, 1):
        began = time.process_time()
        image, nfe = drawer.draw(job)
        seconds = time.process_time() - began
        file = drawer.file(job)
        write_png(out / file, image)
        records.append(SampleRecord(file, "pixelflow", job.mode, job.condition, job.method, nfe, job.seed, seconds))
        if done % every == 0:
            print(f"  {label}{done}/{len(jobs)} samples (now {job.mode} {job.method} {job.multiplier}x), "
                  f"{sum(r.seconds for r in records) / done:.2f} CPU s/image", flush=True)
    return records


# ------------------------------------------------------------------------------------------------ report


def report(args: argparse.Namespace, out: Path, jobs: Sequence[Job], records: Sequence[SampleRecord]) -> str:
    """Judge the written PNGs (the quantised images themselves) per table row and return the summary's markdown;
    ``records`` are the jobs' records in the same order."""
    groups: dict[str, dict[Group, list[SampleRecord]]] = {mode: {} for mode in args.modes}
    for job, record in zip(jobs, records, strict=True):
        groups[job.mode].setdefault((job.method, job.multiplier), []).append(record)
    return "\n\n".join(REPORTS[mode](args, out, groups[mode]) for mode in args.modes)


def accuracy_cells(accuracy: Accuracy) -> list[str]:
    return [proportion(accuracy.correct, accuracy.total),
            *(proportion(*accuracy.per_shape[shape]) for shape in SHAPES)]


def nfe_spent(records: Sequence[SampleRecord]) -> str:
    spent = [record.nfe for record in records]
    return f"{min(spent)}" if min(spent) == max(spent) else f"{min(spent)}-{max(spent)}"


def seconds_per_image(records: Sequence[SampleRecord]) -> float:
    return sum(record.seconds for record in records) / len(records)


def report_c2i(args: argparse.Namespace, out: Path, groups: dict[Group, list[SampleRecord]]) -> str:
    """Class accuracy of the class-to-image samples."""
    records = groups["plain", 1]
    schedule = load_model(args.c2i)[1]
    accuracy = score(read_pngs(out, records), torch.tensor([record.condition for record in records]))
    seconds = seconds_per_image(records)
    print(f"c2i class accuracy {proportion(accuracy.correct, accuracy.total)}, {seconds:.3f} CPU s/image", flush=True)
    table = markdown_table(["samples", "NFE", "class accuracy [95% CI]", *SHAPES, "s/image"],
                           [[len(records), nfe_spent(records), *accuracy_cells(accuracy), f"{seconds:.3f}"]])
    return (f"## PixelFlow class-to-image: `{args.c2i}`\n\n12 classes x {args.per_class} samples, Euler "
            f"{STEPS_PER_STAGE} steps x {schedule.num_stages} stages, cfg {CFG}; per shape: its 4 classes.\n\n{table}")


def report_t2i(args: argparse.Namespace, out: Path, groups: dict[Group, list[SampleRecord]]) -> str:
    """Count accuracy of the text-to-image samples, one row per method and budget."""
    return count_section(f"PixelFlow text-to-image: `{args.t2i}`", f"{args.captions} captions x {args.per_caption} "
                         "samples", out, groups, load_model(args.t2i)[1], "t2i")


def report_count(args: argparse.Namespace, out: Path, groups: dict[Group, list[SampleRecord]]) -> str:
    """The counting experiment's count accuracy, one row per method and budget."""
    return count_section(f"PixelFlow counting experiment: `{args.c2i}`", "The class-to-image model conditioned on the "
                         f"caption's class (it was never told a count); {args.captions} count captions x "
                         f"{args.count_seeds} seeds", out, groups, load_model(args.c2i)[1], "count")


def count_section(title: str, samples: str, out: Path, groups: dict[Group, list[SampleRecord]],
                  schedule: CascadeSchedule, mode: str) -> str:
    return (f"## {title}\n\n{samples}; plain: Euler {STEPS_PER_STAGE} steps per stage, cfg {CFG}; searches: across "
            f"the cascade with the shape-count reward (squared_error) asking for the caption, equal NFE per sample. "
            f"Correct: exactly the requested count of the requested class and nothing else.\n\n"
            f"{count_table(out, groups, schedule, mode)}")


def count_table(out: Path, groups: dict[Group, list[SampleRecord]], schedule: CascadeSchedule, mode: str) -> str:
    rows = []
    for (method, multiplier), records in groups.items():
        search = settings(schedule, method, multiplier)
        accuracy = score_counts(read_pngs(out, records), [record.condition for record in records])
        nfe, seconds = nfe_spent(records), seconds_per_image(records)
        how = "Euler" if search is None else describe(search, schedule)
        print(f"{mode} {method} {multiplier}x ({nfe} NFE): count accuracy "
              f"{proportion(accuracy.correct, accuracy.total)}, {seconds:.3f} CPU s/image", flush=True)
        rows.append([method, f"{multiplier}x", nfe, how, *accuracy_cells(accuracy), f"{seconds:.3f}"])
    return markdown_table(["method", "budget", "NFE spent", "search", "count accuracy [95% CI]", *SHAPES,
                           "s/image"], rows)


REPORTS = {"c2i": report_c2i, "count": report_count, "t2i": report_t2i}
