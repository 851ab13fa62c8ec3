"""MAR speed and memory at the released sizes (mar_base / large / huge, random weights) and README settings.

One MAR iteration costs a transformer pass over the doubled (CFG) batch, whose encoder sees only the known tokens,
plus the diffusion head's 100 steps over the tokens revealed in that iteration. On a CPU a whole image takes minutes
to hours, so the script times representative iterations of the real schedule (same masks and token counts as the
sampler would have) and interpolates over all iterations, for 64 and 256 iterations; ``--whole`` runs complete
images instead (use on a GPU).

    python3 bench/mar_speed.py --models mar_base --probes 3
    python3 bench/mar_speed.py --device cuda --whole 4
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch


from flowar.models.kl16 import AutoencoderKL, KL16Config
from flowar.models.mar import MAR, MARConfig
from flowar.models.mar_release import RELEASED_HEADS
from flowar.samplers.mar.diffusion import diffusion_schedule, guided_output, sample_tokens
from flowar.samplers.mar.noise import SeededMARNoise
from flowar.samplers.mar.sample import masked_after, sample_mar

RELEASES = {"mar_base": (768, 12, 6, 1024), "mar_large": (1024, 16, 8, 1280), "mar_huge": (1280, 20, 12, 1536)}
CFG = 3.0


def build(name: str, device: torch.device) -> MAR:
    width, depth, head_depth, head_width = RELEASES[name]
    heads = RELEASED_HEADS[width]
    config = MARConfig(width, depth, heads, width, depth, heads, diffloss_d=head_depth, diffloss_w=head_width)
    torch.manual_seed(0)
    with torch.device(device):
        model = MAR(config).eval()
    for parameter in model.parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    return model


def iteration_sizes(length: int, num_iter: int) -> list[tuple[int, int]]:
    """(unknown tokens at the start of iteration k, tokens revealed in it), from the sampler's schedule."""
    kept = masked_after(length, num_iter)
    unknown = [length, *kept[:-1]]
    return [(u, u if k == num_iter - 1 else u - kept[k]) for k, u in enumerate(unknown)]


def time_iteration(model: MAR, unknown: int, revealed: int, batch: int, steps: int, device: torch.device) -> float:
    """Seconds for one guided iteration with ``unknown`` masked tokens of which ``revealed`` are sampled."""
    length, channels = model.config.seq_len, model.config.token_dim
    mask = torch.zeros(2 * batch, length, device=device)
    mask[:, :unknown] = 1
    tokens = torch.randn(2 * batch, length, channels, device=device)
    class_rows = torch.cat([model.class_embedding(torch.zeros(batch, dtype=torch.long, device=device), batch),
                            model.class_embedding(None, batch)])
    schedule = diffusion_schedule(steps)
    rows = revealed * batch
    start = time.perf_counter()
    z = model(tokens, mask, class_rows)
    conditions = torch.cat([z[:batch, :revealed].reshape(rows, -1), z[batch:, :revealed].reshape(rows, -1)])
    pair = torch.empty(2 * rows, channels, device=device)

    def denoise(x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        pair[:rows], pair[rows:] = x, x
        return guided_output(model.denoise(pair, timesteps.repeat(2), conditions), channels, CFG)

    sample_tokens(denoise, torch.randn(rows, channels, device=device), schedule,
                  lambda j: torch.randn(rows, channels, device=device))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def extrapolate(model: MAR, num_iter: int, probes: int, batch: int, steps: int, device: torch.device) -> float:
    """Seconds per image: time ``probes`` evenly spaced iterations, interpolate linearly over the others."""
    sizes = iteration_sizes(model.config.seq_len, num_iter)
    time_iteration(model, *sizes[0], batch, steps, device)  # warm-up: first-call allocations are not a cost
    picked = sorted({round(i * (num_iter - 1) / max(probes - 1, 1)) for i in range(probes)})
    measured = {k: time_iteration(model, *sizes[k], batch, steps, device) for k in picked}
    total = 0.0
    for k in range(num_iter):
        left = max(p for p in picked if p <= k)
        right = min((p for p in picked if p >= k), default=left)
        weight = 0.0 if right == left else (k - left) / (right - left)
        total += (1 - weight) * measured[left] + weight * measured[right]
    return total / batch


def decode_seconds(device: torch.device, batch: int) -> float:
    with torch.device(device):
        vae = AutoencoderKL(KL16Config()).eval()
    latents = torch.randn(batch, 16, 16, 16, device=device)
    start = time.perf_counter()
    vae.decode_tokens(latents)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / batch


def whole_image_seconds(model: MAR, num_iter: int, batch: int, steps: int, device: torch.device) -> float:
    start = time.perf_counter()
    sample_mar(model, labels=torch.zeros(batch, dtype=torch.long), batch=batch, num_iter=num_iter, cfg=CFG,
               cfg_schedule="linear", temperature=1.0, schedule=diffusion_schedule(steps), noise=SeededMARNoise(0),
               device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=",".join(RELEASES))
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100, help="diffusion head steps")
    parser.add_argument("--probes", type=int, default=3, help="timed iterations per setting (extrapolation)")
    parser.add_argument("--whole", type=int, default=0, help="time complete images instead (batches of --batch)")
    args = parser.parse_args()
    device = torch.device(args.device)
    report = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "batch": args.batch, "cfg": CFG, "diffusion_steps": args.steps,
              "method": "whole images" if args.whole else f"{args.probes} timed iterations, interpolated",
              "models": {}}
    with torch.no_grad():
        for name in args.models.split(","):
            model = build(name, device)
            row = {"params": sum(p.numel() for p in model.parameters())}
            for num_iter in (64, 256):
                seconds = whole_image_seconds(model, num_iter, args.batch, args.steps, device) if args.whole \
                    else extrapolate(model, num_iter, args.probes, args.batch, args.steps, device)
                row[f"seconds_per_image_{num_iter}_iter"] = round(seconds, 2)
            report["models"][name] = row
            del model
        report["vae_decode_seconds_per_image"] = round(decode_seconds(device, args.batch), 3)
    report["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                                      else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
