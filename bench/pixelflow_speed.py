"""PixelFlow speed and memory at the released class-to-image configuration (XL/4, 256 px, 4 stages), random weights.

Per stage it times a few guided model evaluations (one CFG batch each) and extrapolates seconds per image for the
sampler defaults (10 steps per stage, cfg > 0) and for the paper's FID setting (30 steps per stage); with
``--whole`` it also times complete images (use on a GPU: on a CPU one image takes tens of minutes).

    python3 bench/pixelflow_speed.py                      # CPU, fp32, 1 timed call per stage
    python3 bench/pixelflow_speed.py --device cuda --dtype bf16 --calls 5 --whole 2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch


from flowar.models.pixelflow import PixelFlowModel
from flowar.models.pixelflow_release import PRESETS
from flowar.samplers.pixelflow.cascade import sample_cascade, stage_resolution
from flowar.samplers.pixelflow.guidance import ClassCondition, GuidedVelocity, stage_guidance
from flowar.samplers.pixelflow.noise import SeededPixelFlowNoise
from flowar.samplers.pixelflow.schedule import cascade_schedule
from flowar.samplers.pixelflow.stage import euler_stage

RELEASE = PRESETS["PixelFlow-Class2Image XL/4 256px"]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB -> MiB (whole process)


def build_velocity(device: torch.device, dtype: torch.dtype, batch: int) -> GuidedVelocity:
    torch.manual_seed(0)
    with torch.device(device):
        model = PixelFlowModel(RELEASE.model, dtype=dtype).eval()
    labels = torch.arange(batch, dtype=torch.long) % RELEASE.model.num_classes
    guidance = stage_guidance(4.0, RELEASE.num_stages, "official", class_conditional=True)
    return GuidedVelocity(model, ClassCondition(labels, RELEASE.null_label), guidance,
                          patch_size=RELEASE.model.patch_size, head_dim=RELEASE.model.attention_head_dim, use_cfg=True)


def time_stage_calls(velocity: GuidedVelocity, device: torch.device, batch: int, calls: int, warmup: int
                     ) -> list[float]:
    """Seconds per guided evaluation at each stage's resolution."""
    schedule = cascade_schedule(RELEASE.num_train_timesteps, RELEASE.num_stages)
    seconds = []
    for stage in range(RELEASE.num_stages):
        side = stage_resolution(RELEASE.resolution, stage, RELEASE.num_stages)
        x = torch.randn(batch, 3, side, side, device=device)
        timestep = sum(schedule.timestep_map(stage)) / 2
        for _ in range(warmup):
            velocity(x, timestep, stage)
        synchronize(device)
        start = time.perf_counter()
        for _ in range(calls):
            velocity(x, timestep, stage)
        synchronize(device)
        seconds.append((time.perf_counter() - start) / calls)
    return seconds


def time_whole_images(velocity: GuidedVelocity, device: torch.device, batch: int, images: int) -> float:
    """Seconds per image for complete default runs (10 Euler steps per stage)."""
    schedule = cascade_schedule(RELEASE.num_train_timesteps, RELEASE.num_stages)
    runs = max(1, images // batch)
    synchronize(device)
    start = time.perf_counter()
    for seed in range(runs):
        sample_cascade(velocity, schedule, batch=batch, size=RELEASE.resolution, steps=[10] * RELEASE.num_stages,
                       shift=1.0, noise=SeededPixelFlowNoise(seed), solvers=[euler_stage] * RELEASE.num_stages,
                       device=device)
    synchronize(device)
    return (time.perf_counter() - start) / (runs * batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--batch", type=int, default=1, help="images per CFG batch")
    parser.add_argument("--calls", type=int, default=1, help="timed evaluations per stage")
    parser.add_argument("--warmup", type=int, default=0, help="untimed evaluations per stage first")
    parser.add_argument("--whole", type=int, default=0, help="also time this many complete images")
    args = parser.parse_args()
    device = torch.device(args.device)

    velocity = build_velocity(device, DTYPES[args.dtype], args.batch)
    with torch.no_grad():
        per_call = time_stage_calls(velocity, device, args.batch, args.calls, args.warmup)
        whole = time_whole_images(velocity, device, args.batch, args.whole) if args.whole else None
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "dtype": args.dtype,
        "batch": args.batch,
        "params": sum(p.numel() for p in velocity.model.parameters()),
        "seconds_per_guided_call_by_stage": [round(s, 4) for s in per_call],
        "extrapolated_seconds_per_image": {
            f"{steps}_steps_per_stage": round(steps * sum(per_call) / args.batch, 2) for steps in (10, 30)},
        "nfe_per_image": {f"{steps}_steps_per_stage": steps * RELEASE.num_stages for steps in (10, 30)},
        "measured_seconds_per_image_10_steps": round(whole, 3) if whole is not None else None,
        "peak_memory_mib": round(peak_memory_mib(device), 1),
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
