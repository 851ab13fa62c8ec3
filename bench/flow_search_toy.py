"""Flow searches on a toy flow with a known reward: mean final reward per method at equal NFE, with 95% intervals.

The model is the exact flow of the fixtures' Gaussian mixture (``<fixtures>/flow_search/<case>/toy_model.safetensors``
with ``std`` from its ``config.json``); the reward favours ONE chosen component, ``-scale * mean((x0 - mu_k)^2)``
(by default the least likely component), so a blurry x0 prediction between components cannot win it. Every method
finishes its chosen particle to sigma 0 (``finish='ode'``, search_over_paths by construction), every model call counts
one NFE per latent, and every method gets the same ``max_nfe`` (the finishing ODE included); "plain" is one ODE
sample (steps + finish only). Seeds are paired: seed ``s`` drives every method's noise source.

    python3 bench/flow_search_toy.py --seeds 20 [--max-nfe 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from flowar.samplers.flow_search.noise import SeededFlowSearchNoise
from flowar.samplers.flow_search.run import run_search
from flowar.samplers.flow_search.settings import SearchSettings
from flowar.tooling.toy_flow import GaussianMixtureFlow, squared_distance_reward

PACK_ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {  # name -> settings beyond the shared ones
    "plain": {"method": "best_of_n", "particles": 1, "sde": False},
    "best_of_n": {"method": "best_of_n"},
    "best_of_n (linear ODE)": {"method": "best_of_n", "interpolant": "linear", "sde": False},
    "smc": {"method": "smc"},
    "svdd": {"method": "svdd"},
    "search_over_paths": {"method": "search_over_paths", "interpolant": "linear", "sde": False},
    "rbf": {"method": "rbf"},
    "rbf (linear SDE)": {"method": "rbf", "interpolant": "linear"},
}
PAIRS = (("rbf", "best_of_n"), ("rbf", "best_of_n (linear ODE)"), ("rbf (linear SDE)", "best_of_n (linear ODE)"),
         ("best_of_n", "plain"), ("rbf", "plain"))


def t_quantile_975(df: int) -> float:
    """Student-t 97.5% quantile (Abramowitz & Stegun 26.7.5 expansion; exact to ~1e-4 for df >= 10)."""
    z = 1.959963984540054
    terms = (z, (z**3 + z) / 4, (5 * z**5 + 16 * z**3 + 3 * z) / 96,
             (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384)
    return sum(term / df**power for power, term in enumerate(terms))


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t interval."""
    mean = statistics.fmean(values)
    return mean, t_quantile_975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def toy_case(folder: Path | None) -> tuple[GaussianMixtureFlow, tuple[int, ...], float]:
    if folder is None:
        root = Path(os.environ.get("FLOWAR_FIXTURES", PACK_ROOT.parent / "shared" / "fixtures")) / "flow_search"
        folder = next(path.parent for path in sorted(root.rglob("toy_model.safetensors")))
    tensors, config = load_file(str(folder / "toy_model.safetensors")), json.loads((folder / "config.json").read_text())
    toy = config["toy"]
    model = GaussianMixtureFlow(tensors["means"], tensors["logits"], float(toy["std"]))
    return model, tuple(toy["latent_shape"]), float(toy["reward_scale"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--max-nfe", type=int, default=500)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--finish-steps", type=int, default=10)
    parser.add_argument("--component", type=int, default=None, help="favoured component (default: least likely)")
    parser.add_argument("--case", type=Path, default=None, help="a flow_search case folder with toy_model.safetensors")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("need at least 2 seeds for an interval")

    torch.set_num_threads(1)
    model, shape, scale = toy_case(args.case)
    component = int(model.logits.argmin()) if args.component is None else args.component
    reward = squared_distance_reward(model.means[component].reshape(shape), scale)
    shared = dict(max_nfe=args.max_nfe, steps=args.steps, finish_steps=args.finish_steps, finish="ode")
    results: dict[str, dict[str, list[float]]] = {}
    for name, extra in VARIANTS.items():
        settings = SearchSettings(**{**shared, **extra})
        runs = {"reward": [], "nfe": [], "seconds": []}
        for seed in range(args.seeds):
            started = time.perf_counter()
            result = run_search(model, reward, shape, settings, SeededFlowSearchNoise(seed))
            runs["seconds"].append(time.perf_counter() - started)
            runs["reward"].append(result.reward)
            runs["nfe"].append(result.nfe)
        results[name] = runs

    weights = torch.softmax(model.logits, 0)
    print(f"toy: {model.means.shape[0]}-component Gaussian mixture in R^{model.means.shape[1]} (std {model.std}), "
          f"reward -{scale} * mean((x0 - mu_{component})^2), component weight {weights[component]:.3f}")
    print(f"settings: max_nfe {args.max_nfe}, steps {args.steps}, finish ode {args.finish_steps} steps, "
          f"seeds 0..{args.seeds - 1} (paired), torch {torch.__version__}, CPU 1 thread\n")
    print("| method | NFE used (mean) | mean reward ± 95% CI | s/run |")
    print("|---|---|---|---|")
    for name, runs in results.items():
        mean, half = interval(runs["reward"])
        print(f"| {name} | {statistics.fmean(runs['nfe']):.1f} | {mean:.4f} ± {half:.4f} | "
              f"{statistics.fmean(runs['seconds']):.3f} |")
    print("\n| paired difference | mean ± 95% CI | wins |")
    print("|---|---|---|")
    for first, second in PAIRS:
        diffs = [a - b for a, b in zip(results[first]["reward"], results[second]["reward"])]
        mean, half = interval(diffs)
        wins = sum(d > 0 for d in diffs)
        print(f"| {first} - {second} | {mean:.4f} ± {half:.4f} | {wins}/{len(diffs)} |")
    if args.json is not None:
        args.json.write_text(json.dumps({"component": component, "settings": shared, "results": results}, indent=1))


if __name__ == "__main__":
    main()
