"""ARPG family of ``bench/quality.py``: class accuracy of the built-in tiny ARPG decoding in parallel (``c2i``, method
``parallel``: 16 steps of 4 tokens in a random order) and in raster order (method ``raster``: 64 steps of one
token), and of its zero-shot editing (``inpaint``: the centre 4x4 tokens of a held-out world image regenerated for its
class; ``outpaint``: the border ring one token wide regenerated); how samples are drawn is in
``flowar.tooling.arpg_sampling`` (shared with ``demo.py``).

Seeds: sample ``j`` of class ``k`` has seed ``12 j + k`` in both methods; editing case ``j`` (class ``j mod 12``) has
seed ``j``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from flowar.models.shapes import CLASS_NAMES, SHAPES
from flowar.tooling.accuracy import score
from flowar.tooling.arpg_eval import BUILTIN_STEPS, EDITS, PARALLEL, edit_cases

from flowar.tooling.arpg_sampling import METHODS, add_model_arguments, load_models, sample_class, sample_edit
from flowar.tooling.report import SampleRecord, markdown_table, proportion, read_pngs, write_png

MODES = ("c2i", *EDITS)


def add_arguments(parser: argparse._ArgumentGroup) -> None:
    add_model_arguments(parser)
    parser.add_argument("--edit-cases", type=int, default=240, help="ARPG inpainting and outpainting cases each "
                                                                    "(classes in turn)")


@dataclass(frozen=True)
class Job:
    """One sample: ``condition`` is the class index; an editing job's seed is also its case number."""

    mode: str
    method: str
    condition: int
    seed: int


def plan(args: argparse.Namespace) -> list[Job]:
    unknown = [mode for mode in args.modes if mode not in MODES]
    if unknown:
        raise SystemExit(f"unknown ARPG mode {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if min(args.per_class, args.edit_cases) < 1:
        raise SystemExit("--per-class and --edit-cases must be >= 1")
    jobs = []
    if "c2i" in args.modes:
        jobs += [Job("c2i", method, label, j * len(CLASS_NAMES) + label) for method in METHODS
                 for j in range(args.per_class) for label in range(len(CLASS_NAMES))]
    for edit in EDITS:
        if edit in args.modes:
            jobs += [Job(edit, "parallel", j % len(CLASS_NAMES), j) for j in range(args.edit_cases)]
    return jobs


def generate(args: argparse.Namespace, jobs: Sequence[Job], out: Path, label: str) -> list[SampleRecord]:
    """Draw ``jobs`` one by one at batch 1 and write their PNGs (``arpg/<mode>[-raster]/<class>_s<seed>.png``);
    the records carry the CPU seconds each image took (one thread per process)."""
    model, vq = load_models(args.arpg, args.arpg_vq)
    cases = edit_cases(args.edit_cases) if set(EDITS) & set(args.modes) else []
    records, every = [], max(1, len(jobs) // 20)
    for done, job in enumerate(jobs, 1):
        began = time.process_time()
        if job.mode == "c2i":
            image, nfe = sample_class(model, vq, job.condition, job.seed, job.method)
        else:
            image, nfe = sample_edit(model, vq, cases[job.seed], job.mode, job.seed)
        seconds = time.process_time() - began
        folder = job.mode if job.method == "parallel" else f"{job.mode}-{job.method}"
        file = f"arpg/{folder}/{CLASS_NAMES[job.condition].replace(' ', '_')}_s{job.seed}.png"
        write_png(out / file, image)
        records.append(SampleRecord(file, "arpg", job.mode, job.condition, job.method, nfe, job.seed, seconds))
        if done % every == 0:
            print(f"  {label}{done}/{len(jobs)} samples (now {job.mode} {job.method}), "
                  f"{sum(r.seconds for r in records) / done:.2f} CPU s/image", flush=True)
    return records


def report(args: argparse.Namespace, out: Path, jobs: Sequence[Job], records: Sequence[SampleRecord]) -> str:
    """Class accuracy of the written PNGs per mode and method, with per-shape accuracy and seconds per image."""
    rows = []
    for mode in args.modes:
        for method in METHODS if mode == "c2i" else ("parallel",):
            chosen = [record for job, record in zip(jobs, records, strict=True)
                      if job.mode == mode and job.method == method]
            accuracy = score(read_pngs(out, chosen), torch.tensor([record.condition for record in chosen]))
            seconds = sum(record.seconds for record in chosen) / len(chosen)
            print(f"ARPG {mode} {method} class accuracy {proportion(accuracy.correct, accuracy.total)}, "
                  f"{seconds:.3f} CPU s/image", flush=True)
            rows.append([mode, method, len(chosen), chosen[0].nfe, proportion(accuracy.correct, accuracy.total),
                         *(proportion(*accuracy.per_shape[shape]) for shape in SHAPES), f"{seconds:.3f}"])
    table = markdown_table(["mode", "method", "samples", "steps (NFE)", "class accuracy [95% CI]", *SHAPES,
                            "s/image"], rows)
    raster = METHODS["raster"]
    return (f"## ARPG: `{args.arpg}` with `{args.arpg_vq}`\n\nparallel (the built-in's settings, as in its "
            f"workflows): {BUILTIN_STEPS} steps, {PARALLEL.schedule} schedule, cfg {PARALLEL.guidance} "
            f"{PARALLEL.cfg_schedule}, temperature {PARALLEL.temperature}; raster: one token per step in reading "
            f"order, cfg {raster.guidance} {raster.cfg_schedule}, temperature {raster.temperature}. c2i: "
            f"{args.per_class} samples per class and method; inpaint / outpaint: held-out world images of each "
            "class in turn with an object in the centre 16x16 px; inpaint regenerates the centre 4x4 tokens, "
            "outpaint the border ring one token wide. Correct: 1 to 4 objects, all of the requested class.\n\n" + table)
