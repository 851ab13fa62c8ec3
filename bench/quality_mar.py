"""MAR family of ``bench/quality.py``: class accuracy of the built-in tiny MAR (``c2i``, method ``plain``) and of its
inpainting (``inpaint``: a held-out world image's left half kept, the right half generated for its class), both at
the MAR Sampler node's defaults; how samples are drawn is in ``flowar.tooling.mar_sampling`` (shared with ``demo.py``).

Seeds: sample ``j`` of class ``k`` has seed ``12 j + k``; inpainting case ``j`` (class ``j mod 12``) has seed ``j``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from flowar.models.shapes import CLASS_NAMES, SHAPES
from flowar.samplers.mar.defaults import CFG, CFG_SCHEDULE, DIFFUSION_STEPS, NUM_ITER, TEMPERATURE
from flowar.tooling.accuracy import score
from flowar.tooling.mar_eval import inpaint_cases

from flowar.tooling.mar_sampling import add_model_arguments, load_models, sample_class, sample_inpaint
from flowar.tooling.report import SampleRecord, markdown_table, proportion, read_pngs, write_png

MODES = ("c2i", "inpaint")


def add_arguments(parser: argparse._ArgumentGroup) -> None:
    add_model_arguments(parser)
    parser.add_argument("--inpaint-cases", type=int, default=240, help="MAR inpainting cases (classes in turn)")


@dataclass(frozen=True)
class Job:
    """One sample: ``condition`` is the class index; an inpainting job's seed is also its case number."""

    mode: str
    condition: int
    seed: int


def plan(args: argparse.Namespace) -> list[Job]:
    unknown = [mode for mode in args.modes if mode not in MODES]
    if unknown:
        raise SystemExit(f"unknown MAR mode {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if min(args.per_class, args.inpaint_cases) < 1:
        raise SystemExit("--per-class and --inpaint-cases must be >= 1")
    jobs = []
    if "c2i" in args.modes:
        jobs += [Job("c2i", label, j * len(CLASS_NAMES) + label)
                 for j in range(args.per_class) for label in range(len(CLASS_NAMES))]
    if "inpaint" in args.modes:
        jobs += [Job("inpaint", j % len(CLASS_NAMES), j) for j in range(args.inpaint_cases)]
    return jobs


def generate(args: argparse.Namespace, jobs: Sequence[Job], out: Path, label: str) -> list[SampleRecord]:
    """Draw ``jobs`` one by one at batch 1 and write their PNGs (``mar/<mode>/<class>_s<seed>.png``); the records
    carry the CPU seconds each image took (one thread per process)."""
    model, vae = load_models(args.mar, args.mar_vae)
    cases = inpaint_cases(args.inpaint_cases) if "inpaint" in args.modes else []
    records, every = [], max(1, len(jobs) // 20)
    for done, job in enumerate(jobs, 1):
        began = time.process_time()
        if job.mode == "c2i":
            image, nfe = sample_class(model, vae, job.condition, job.seed)
        else:
            image, nfe = sample_inpaint(model, vae, cases[job.seed], job.seed)
        seconds = time.process_time() - began
        file = f"mar/{job.mode}/{CLASS_NAMES[job.condition].replace(' ', '_')}_s{job.seed}.png"
        write_png(out / file, image)
        records.append(SampleRecord(file, "mar", job.mode, job.condition, "plain", nfe, job.seed, seconds))
        if done % every == 0:
            print(f"  {label}{done}/{len(jobs)} samples (now {job.mode}), "
                  f"{sum(r.seconds for r in records) / done:.2f} CPU s/image", flush=True)
    return records


def report(args: argparse.Namespace, out: Path, jobs: Sequence[Job], records: Sequence[SampleRecord]) -> str:
    """Class accuracy of the written PNGs per mode, with per-shape accuracy and seconds per image."""
    rows = []
    for mode in args.modes:
        chosen = [record for job, record in zip(jobs, records, strict=True) if job.mode == mode]
        accuracy = score(read_pngs(out, chosen), torch.tensor([record.condition for record in chosen]))
        seconds = sum(record.seconds for record in chosen) / len(chosen)
        print(f"MAR {mode} class accuracy {proportion(accuracy.correct, accuracy.total)}, {seconds:.3f} CPU s/image",
              flush=True)
        rows.append([mode, len(chosen), NUM_ITER, proportion(accuracy.correct, accuracy.total),
                     *(proportion(*accuracy.per_shape[shape]) for shape in SHAPES), f"{seconds:.3f}"])
    table = markdown_table(["mode", "samples", "iterations (NFE)", "class accuracy [95% CI]", *SHAPES, "s/image"],
                           rows)
    return (f"## MAR: `{args.mar}` with `{args.mar_vae}`\n\n{NUM_ITER} iterations, cfg {CFG} {CFG_SCHEDULE}, "
            f"temperature {TEMPERATURE}, {DIFFUSION_STEPS} diffusion steps (the sampler node's defaults). c2i: "
            f"{args.per_class} samples per class; inpaint: held-out world images of each class in turn with an object "
            "in the left half, the left half's tokens kept, the right half generated. Correct: 1 to 4 objects, all "
            f"of the requested class.\n\n{table}")
