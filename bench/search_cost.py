"""What a PixelFlow reward search spends its time on, against plain sampling: model calls, reward, the rest.

    python bench/search_cost.py [--multiplier 8] [--repeats 3]

Runs the built-in class-to-image model (one torch thread, batch 1, the counting experiment's first captions) plainly
and with each search at ``multiplier`` x the plain NFE, timing every guided velocity call (per stage) and every
reward call with CPU time. Reports per method: seconds per image, seconds per model call and its ratio to plain's,
the share of model calls, reward and the rest (bookkeeping, noise, stage changes), and the *stage-matched* ratio:
the search's time over what its model calls would cost at plain sampling's per-call price in the same stages (a
search spends more of its calls in the later, larger stages, so the raw ratio mixes stage prices with overhead).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from collections.abc import Sequence

import torch
from torch import Tensor

from flowar.models.rewards.shapes_count import ShapesCountReward
from flowar.models.shapes import CAPTIONS
from flowar.samplers.pixelflow.defaults import SEARCH_SEED_SALT, STEPS_PER_STAGE
from flowar.samplers.pixelflow.guidance import ClassCondition
from flowar.samplers.pixelflow.noise import SeededCascadeSearchNoise, SeededPixelFlowNoise
from flowar.samplers.pixelflow.cascade import sample_cascade
from flowar.samplers.pixelflow.search import search_cascade
from flowar.samplers.pixelflow.stage import euler_stage
from flowar.tooling.pixelflow_eval import SIZE, guided_velocity
from flowar.tooling.pixelflow_sampling import BUILTIN, SEARCH_METHODS, load_model, search_settings
from flowar.tooling.report import caption_class, markdown_table


class TimedVelocity:
    """A stage velocity that adds each call's CPU time and row count to per-stage totals."""

    def __init__(self, velocity, seconds: dict[int, float], calls: dict[int, int]) -> None:
        self.velocity, self.seconds, self.calls = velocity, seconds, calls

    def rows(self, rows: Sequence[int]) -> TimedVelocity:
        return TimedVelocity(self.velocity.rows(rows), self.seconds, self.calls)

    def __call__(self, x: Tensor, timestep, stage: int) -> Tensor:
        began = time.process_time()
        out = self.velocity(x, timestep, stage)
        self.seconds[stage] += time.process_time() - began
        self.calls[stage] += x.shape[0]
        return out


def measure(model, schedule, method: str | None, multiplier: int, captions: Sequence[str]) -> dict[str, object]:
    seconds, calls = defaultdict(float), defaultdict(int)
    reward_seconds = [0.0]
    counter = ShapesCountReward("squared_error")
    began = time.process_time()
    for seed, caption in enumerate(captions):
        condition = ClassCondition(torch.tensor([caption_class(caption)]), model.config.num_classes)
        velocity = TimedVelocity(guided_velocity(model, schedule, condition), seconds, calls)
        noise = SeededPixelFlowNoise(seed, schedule.gamma)
        steps = [STEPS_PER_STAGE] * schedule.num_stages
        with torch.no_grad():
            if method is None:
                sample_cascade(velocity, schedule, batch=1, size=SIZE, steps=steps, shift=1.0, noise=noise,
                               solvers=[euler_stage] * schedule.num_stages, device=torch.device("cpu"))
                continue

            def reward(images: Tensor, caption: str = caption) -> Tensor:
                start = time.process_time()
                scores = counter.score(images, caption)
                reward_seconds[0] += time.process_time() - start
                return scores

            search_cascade(velocity, schedule, search_settings(method, multiplier, schedule), reward, batch=1,
                           size=SIZE, steps=steps, shift=1.0, noise=noise,
                           search_noise=SeededCascadeSearchNoise(seed ^ SEARCH_SEED_SALT), device=torch.device("cpu"))
    total = time.process_time() - began
    return {"total": total, "model": sum(seconds.values()), "reward": reward_seconds[0], "seconds": dict(seconds),
            "calls": dict(calls), "images": len(captions)}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--c2i", default=str(BUILTIN / "pixelflow" / "shapes-c2i" / "model.safetensors"))
    parser.add_argument("--multiplier", type=int, default=8)
    parser.add_argument("--images", type=int, default=6, help="captions (one seed each) per method")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    model, schedule = load_model(__import__("pathlib").Path(args.c2i))
    captions = [CAPTIONS[k * len(CAPTIONS) // args.images] for k in range(args.images)]
    for method in (None, *SEARCH_METHODS):  # warm-up: the first calls at each batch size and stage cost more
        measure(model, schedule, method, args.multiplier, captions[:1])
    plain = measure(model, schedule, None, 1, captions)
    price = {stage: plain["seconds"][stage] / plain["calls"][stage] for stage in plain["calls"]}  # s per call
    per_call = plain["total"] / sum(plain["calls"].values())
    rows = []
    for name, result in [("plain", plain)] + [(m, measure(model, schedule, m, args.multiplier, captions))
                                             for m in SEARCH_METHODS]:
        nfe = sum(result["calls"].values())
        matched = sum(price[stage] * count for stage, count in result["calls"].items())
        other = result["total"] - result["model"] - result["reward"]
        rows.append([name, nfe // result["images"], f"{result['total'] / result['images']:.3f}",
                     f"{1000 * result['total'] / nfe:.2f}", f"{result['total'] / nfe / per_call:.2f}",
                     f"{result['total'] / (matched * plain['total'] / plain['model']):.2f}",
                     f"{100 * result['model'] / result['total']:.0f} / {100 * result['reward'] / result['total']:.0f}"
                     f" / {100 * other / result['total']:.0f}",
                     " ".join(f"{result['calls'].get(s, 0) // result['images']}" for s in range(schedule.num_stages))])
    table = markdown_table(["method", "NFE/image", "s/image", "ms/call", "x plain per call", "x plain, stage-matched",
                            "% model / reward / rest", "calls per stage"], rows)
    print(table)
    return table


if __name__ == "__main__":
    main()
