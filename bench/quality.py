"""Quality of the built-in tiny models on the shapes world: every sample written as a PNG with a manifest, accuracies
with 95% intervals, seconds per image, and a markdown summary naming the machine.

    python bench/quality.py --family pixelflow --out out/quality            # the defaults
    python bench/quality.py --family pixelflow --out /tmp/q --per-class 2 --per-caption 1 --multipliers 1,4
    python bench/quality.py --family mar --out out/quality-mar              # c2i and inpainting
    python bench/quality.py --family arpg --out out/quality-arpg            # c2i (parallel, raster) and editing

``DIR/manifest.json`` lists ``{file, family, mode, class_index | caption, method, nfe, seed}`` per sample (``file``
relative to DIR, ``nfe`` the model calls actually spent on it, ``seed`` the sampler seed that reproduces it with
batch size 1); ``DIR/summary.md`` repeats the printed tables. Same command, same manifest and images, whatever
``--workers`` (the timings in the summary vary).

Samples are drawn one by one with one torch thread by ``--workers`` processes (default: the logical cores, at most
8): a sample is compute bound at batch 1, and two 1-thread processes draw about twice as fast as one process with 2
threads at these sizes. With one worker everything runs in this process; with more, this script runs itself once
per worker with the hidden ``--shard i/N`` option, worker ``i`` draws jobs ``i, i + N, ...`` of the run's list and
leaves its records in ``DIR/.shard-i.json``, and this process merges them in the list's order and judges the PNGs.
Pinning one thread also keeps the images independent of the worker count (thread counts can change float rounding).

Each family lives in its own module ``quality_<family>.py`` with ``MODES`` (the default ``--modes``),
``add_arguments(group)`` (options named for the family where they are its own), ``plan(args) -> jobs``
(every sample, in the manifest's order), ``generate(args, jobs, out, label) -> records`` (draws and writes any slice
of the jobs) and ``report(args, out, jobs, records) -> markdown`` (judges the written PNGs).
``flowar.tooling.pixelflow_sampling`` explains how PixelFlow samples are drawn, counted and searched, and which search
settings each NFE budget gets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType


import torch

import quality_arpg
import quality_mar
import quality_pixelflow
from flowar.tooling.report import SampleRecord, machine, write_manifest

FAMILIES = {"pixelflow": quality_pixelflow, "mar": quality_mar, "arpg": quality_arpg}
MAX_WORKERS = 8
POLL_SECONDS = 0.2


def shard(text: str) -> tuple[int, int]:
    """``"i/N"``: this process is worker ``i`` (from 0) of ``N``."""
    index, count = (int(part) for part in text.split("/"))
    if not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"shard {text}: want i/N with 0 <= i < N")
    return index, count


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", required=True, choices=sorted(FAMILIES))
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs, manifest.json and summary.md")
    parser.add_argument("--workers", type=int, default=max(1, min(os.cpu_count() or 1, MAX_WORKERS)),
                        help="processes drawing the samples, one torch thread each (default: the logical cores, at "
                             "most 8); any count gives the same manifest and images")
    parser.add_argument("--shard", type=shard, help=argparse.SUPPRESS)  # set by the parent run on its workers
    parser.add_argument("--modes", type=lambda text: [part for part in text.split(",") if part], default=None,
                        help="comma-separated modes of the family (default: all of them: pixelflow c2i,count,t2i; "
                             "mar c2i,inpaint; arpg c2i,inpaint,outpaint)")
    parser.add_argument("--per-class", type=int, default=20, help="class-to-image samples per class (12 classes)")
    for name, module in FAMILIES.items():
        module.add_arguments(parser.add_argument_group(f"{name} options"))
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    args.modes = args.modes or list(FAMILIES[args.family].MODES)
    return args


def main(argv: Sequence[str] | None = None) -> str:
    """Run the benchmark; returns the summary (also printed and written to ``DIR/summary.md``), or "" when this
    process is a worker (``--shard``) of a run."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse(argv)
    family = FAMILIES[args.family]
    jobs = family.plan(args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.shard is not None:
        index, count = args.shard
        records = draw(family, args, jobs[index::count], f"worker {index + 1}/{count}: ")
        shard_records(args.out, index).write_text(json.dumps([dataclasses.asdict(r) for r in records]))
        return ""
    began = time.perf_counter()
    workers = min(args.workers, len(jobs))
    records = draw(family, args, jobs, "") if workers == 1 else run_workers(argv, args.out, workers, len(jobs))
    section = family.report(args, args.out, jobs, records)
    write_manifest(args.out, records)
    summary = (f"# Quality benchmark: {args.family}\n\n`{shlex.join(['python', 'bench/quality.py', *argv])}`\n\n"
               f"machine: {machine(workers)}; {len(records)} samples in {time.perf_counter() - began:.0f} s wall "
               f"time; s/image: mean CPU seconds a worker (one thread) spends sampling an image\n\n{section}\n")
    (args.out / "summary.md").write_text(summary)
    print(summary, flush=True)
    return summary


def draw(family: ModuleType, args: argparse.Namespace, jobs: Sequence, label: str) -> list[SampleRecord]:
    """The family's ``generate`` with one torch thread, as every worker draws (the images must not depend on the
    worker count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return family.generate(args, jobs, args.out, label)
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------- workers


def shard_records(out: Path, index: int) -> Path:
    return out / f".shard-{index}.json"


def shard_log(out: Path, index: int) -> Path:
    return out / f".shard-{index}.log"


def run_workers(argv: Sequence[str], out: Path, count: int, total: int) -> list[SampleRecord]:
    """Draw the run's ``total`` jobs in ``count`` worker processes of this script and merge their records in the
    order one process gives (worker ``i`` drew jobs ``i, i + count, ...``)."""
    processes = [start_worker(argv, out, index, count) for index in range(count)]
    try:
        wait_for(processes, out)
        records: list[SampleRecord | None] = [None] * total
        for index in range(count):
            forward_warnings(out, index)
            records[index::count] = [SampleRecord(**entry)
                                     for entry in json.loads(shard_records(out, index).read_text())]
        return records
    finally:
        for index, process in enumerate(processes):
            if process.poll() is None:  # another worker failed: there is no run left to finish
                process.kill()
                process.wait()
            shard_records(out, index).unlink(missing_ok=True)
            shard_log(out, index).unlink(missing_ok=True)


def start_worker(argv: Sequence[str], out: Path, index: int, count: int) -> subprocess.Popen:
    """Worker ``index`` of ``count``: progress on our stdout, errors kept in its log for the failure message."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--shard", f"{index}/{count}"]
    with shard_log(out, index).open("w") as log:
        return subprocess.Popen(command, stderr=log, env={**os.environ, "OMP_NUM_THREADS": "1"})


def wait_for(processes: Sequence[subprocess.Popen], out: Path) -> None:
    """Return when every worker has succeeded; exit with the error output of the first that fails, without waiting
    for the others (they are stopped)."""
    while True:
        codes = [process.poll() for process in processes]
        for index, code in enumerate(codes):
            if code not in (None, 0):
                raise SystemExit(f"quality worker {index + 1}/{len(processes)} failed (exit status {code}):\n"
                                 f"{shard_log(out, index).read_text().strip()}")
        if all(code == 0 for code in codes):
            return
        time.sleep(POLL_SECONDS)


def forward_warnings(out: Path, index: int) -> None:
    """A successful worker's stderr (warnings), which would otherwise vanish with its log."""
    text = shard_log(out, index).read_text()
    if text:
        sys.stderr.write(text)


if __name__ == "__main__":
    main()
