"""ARPG speed and memory: randomized parallel decoding against the raster baseline (one token per step), at the
released sizes (ARPG-L / XL / XXL, random weights), batch 1 and a larger batch, guidance on (doubled batch).

A step's cost depends mainly on the tokens it processes (content tokens fed + positions queried; the weights are
read once per step whatever the count), so for each size and batch the script times model calls of a few step sizes
(against a KV cache of typical length, best of three) and interpolates linearly between them; a mode's run time is
the sum over its step plan (64 arccos steps of 2 to 40 tokens, or 256 steps of 2 tokens). Complete sampler runs are
timed for the sizes given with ``--whole`` (default ARPG-L, which validates the interpolation); the report marks
every number as measured or extrapolated. Each size runs in its own process so its peak memory (RSS on CPU) is its
own.

    python3 bench/arpg_speed.py                              # CPU, fp32, L/XL/XXL, batch 1 and 4
    python3 bench/arpg_speed.py --device cuda --dtype bf16 --batches 1 32 --whole ARPG-L ARPG-XL ARPG-XXL
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import torch


from flowar.models.arpg import ARPGTransformer
from flowar.models.arpg_release import ARPG_PRESETS
from flowar.samplers.arpg.decode import DecodeSettings, sample_arpg
from flowar.samplers.arpg.noise import SeededARPGNoise
from flowar.samplers.arpg.schedule import tokens_per_step

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = {"parallel": DecodeSettings(steps=64, schedule="arccos", guidance=4.0),
         "raster": DecodeSettings(schedule="raster", guidance=4.0)}
PROBE_TOKENS = (2, 6, 16, 40)  # tokens per sequence in a probed step (half content, half queries)
PROBE_CACHE = 128  # content tokens already cached in a probed step (half a 256-token run)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_model(size: str, device: torch.device, dtype: torch.dtype) -> ARPGTransformer:
    """A release-size model with random weights (std 0.02, the official initializer range)."""
    with torch.device("meta"):
        model = ARPGTransformer(ARPG_PRESETS[size], dtype=dtype)
    model = model.to_empty(device=device).eval()
    generator = torch.Generator(device).manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.02, generator=generator)
    return model


def step_plan(settings: DecodeSettings, length: int) -> list[tuple[int, int]]:
    """(content tokens fed, positions queried) of every step of a run over ``length`` positions."""
    counts = tokens_per_step(length, settings.steps, settings.schedule)
    return [(1 if step == 0 else counts[step - 1], count) for step, count in enumerate(counts)]


def probe_step(model: ARPGTransformer, rows: int, tokens: int, device: torch.device, repeats: int) -> float:
    """Seconds of one step of ``tokens`` per row: half fed as content, the rest queried."""
    config = model.config
    fed = tokens // 2
    table = model.rope_table(config.grid_size, config.grid_size).to(device)
    ids = torch.randint(0, config.vocab_size, (rows, fed), device=device)
    seconds = []
    for _ in range(repeats + 1):  # the first call warms up
        cache = model.new_kv_cache(rows, PROBE_CACHE + fed, device=device, dtype=model.activation_dtype)
        filler = torch.zeros(rows, config.n_head, PROBE_CACHE, config.head_dim, device=device,
                             dtype=model.activation_dtype)
        for layer_cache in (*cache.content, cache.shared):
            layer_cache.append(filler, filler)
        synchronize(device)
        start = time.perf_counter()
        with torch.no_grad():
            model(ids, table[1:1 + fed], table[1:1 + tokens - fed], cache=cache)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        cache.release()
    return min(seconds[1:])


def interpolate(points: list[tuple[int, float]], tokens: int) -> float:
    """Seconds of a step of ``tokens`` per row, linear between the probed sizes (sorted by tokens)."""
    for (low, low_s), (high, high_s) in zip(points, points[1:]):
        if tokens <= high:
            return low_s + (high_s - low_s) * (tokens - low) / (high - low)
    raise ValueError(f"{tokens} tokens per step is beyond the probed sizes")


def whole_run(model: ARPGTransformer, settings: DecodeSettings, batch: int, device: torch.device, repeats: int
              ) -> float:
    """Seconds of a complete sampler run, the best of ``repeats`` (other processes on the machine only add time)."""
    labels = torch.arange(batch) % model.config.num_classes
    grid = (model.config.grid_size,) * 2
    seconds = []
    for seed in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        sample_arpg(model, labels, grid=grid, settings=settings, draws=SeededARPGNoise(seed), device=device)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def kv_cache_bytes(model: ARPGTransformer, settings: DecodeSettings, batch: int) -> int:
    """What the run allocates for its caches: (content layers + 1 shared) x (k, v) x rows x heads x capacity x hd."""
    config, length = model.config, model.config.block_size
    capacity = 1 + length - tokens_per_step(length, settings.steps, settings.schedule)[-1]
    rows = 2 * batch if settings.uses_guidance else batch
    element = torch.finfo(model.activation_dtype).bits // 8
    return (config.n_layer // 2 + 1) * 2 * rows * config.n_head * capacity * config.head_dim * element


def measure_size(size: str, batches: list[int], device: torch.device, dtype: torch.dtype, whole_repeats: int
                 ) -> dict:
    """Everything for one size (run in its own process)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model = build_model(size, device, dtype)
    length = model.config.block_size
    results = {"params": sum(p.numel() for p in model.parameters()), "batches": {}}
    for batch in batches:
        rows = 2 * batch  # guidance doubles the batch
        points = [(tokens, probe_step(model, rows, tokens, device, repeats=3)) for tokens in PROBE_TOKENS]
        per_batch = {"seconds_per_step_by_tokens": {tokens: round(seconds, 4) for tokens, seconds in points}}
        for mode, settings in MODES.items():
            plan = step_plan(settings, length)
            predicted = sum(interpolate(points, fed + queried) for fed, queried in plan)
            entry = {"steps": len(plan), "extrapolated_seconds": round(predicted, 2),
                     "kv_cache_mib": round(kv_cache_bytes(model, settings, batch) / 2**20, 1)}
            seconds, source = predicted, "extrapolated"
            if whole_repeats:
                seconds, source = whole_run(model, settings, batch, device, whole_repeats), "measured"
                entry["measured_seconds"] = round(seconds, 2)
            entry |= {"seconds_from": source, "images_per_s": round(batch / seconds, 4),
                      "tokens_per_s": round(batch * length / seconds, 1)}
            per_batch[mode] = entry
        speedup = per_batch["parallel"]["images_per_s"] / per_batch["raster"]["images_per_s"]
        per_batch["parallel_speedup_over_raster"] = round(speedup, 2)
        results["batches"][str(batch)] = per_batch
    results["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else
                                       resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["peak_memory_kind"] = "cuda max allocated" if device.type == "cuda" else "process peak RSS (weights incl.)"
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--sizes", nargs="+", choices=sorted(ARPG_PRESETS), default=list(ARPG_PRESETS))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--whole", nargs="*", default=["ARPG-L"], help="sizes whose complete runs are timed")
    parser.add_argument("--repeats", type=int, default=2, help="complete runs per mode; the fastest counts")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one size in this process
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.one:
        repeats = args.repeats if args.one in args.whole else 0
        print(json.dumps(measure_size(args.one, args.batches, device, DTYPES[args.dtype], repeats)))
        return
    load_before, sizes = os.getloadavg()[0], {}
    for size in args.sizes:
        command = [sys.executable, __file__, "--one", size, "--device", args.device, "--dtype", args.dtype,
                   "--batches", *map(str, args.batches), "--whole", *args.whole, "--repeats", str(args.repeats)]
        sizes[size] = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": args.dtype,
        "modes": {"parallel": "arccos, 64 steps", "raster": "one token per step, 256 steps"},
        "guidance": "cfg 4 linear (doubled batch), as the official sampler",
        "note": "seconds_from says whether a run was timed whole or extrapolated from timed step sizes",
        "load_average_1min_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "sizes": sizes,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
