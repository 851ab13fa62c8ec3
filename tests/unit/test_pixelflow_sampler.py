"""PixelFlow cascade sampler: scheduler tables and full cascades against the fixtures, dopri5, image-to-image.

Every name, step count and shape is derived from each case's ``config.json`` and tensor names, so the tests pass
on any fixture set made the same way.
"""

from __future__ import annotations

import re

import pytest
import torch
from support.pixelflow_fixtures import cascade_cases, cases_with, fixture_condition, fixture_model, run_fixture_cascade

from flowar.kernels.block_noise import block_cholesky, correlate_blocks
from flowar.kernels.rope import pixelflow_rope_table
from flowar.samplers.common import Trace
from flowar.samplers.pixelflow.cascade import check_size, entry_point, sample_cascade
from flowar.samplers.pixelflow.dopri5 import dopri5
from flowar.samplers.pixelflow.guidance import GuidedVelocity, stage_guidance
from flowar.samplers.pixelflow.noise import SeededPixelFlowNoise
from flowar.samplers.pixelflow.schedule import DEFAULT_GAMMA, cascade_schedule
from flowar.samplers.pixelflow.stage import STAGE_SOLVERS, StageProblem, dopri5_stage, euler_stage
from flowar.samplers.pixels import pixels_to_image

STEP_RECORD = re.compile(r"^cascade\.s\d+\.k\d+\.")


def tolerance(case, kind: str) -> dict[str, float]:
    return case.config["tolerances"][kind]


def close(actual, expected, tol: dict[str, float], msg: str) -> None:
    torch.testing.assert_close(actual.to(expected.dtype), expected, atol=tol["atol"], rtol=tol["rtol"], msg=msg)


# ---------------------------------------------------------------------------------------------- scheduler tables

@pytest.mark.parametrize("case", cases_with("scheduler_configs"))
def test_pixelflow_scheduler_tables_match_fixtures(case) -> None:
    entries = [(f"cfg{i}.", entry) for i, entry in enumerate(case.config["scheduler_configs"])]
    tol, tensors, compared = tolerance(case, "scheduler"), case.tensors, set()
    gamma = case.config.get("gamma", DEFAULT_GAMMA)
    for prefix, entry in entries:
        schedule = cascade_schedule(entry["num_train_timesteps"], entry["num_stages"], gamma)
        steps = entry["steps"] if isinstance(entry["steps"], list) else [entry["steps"]] * entry["num_stages"]
        ours = {
            "original_start_t": torch.tensor(schedule.original_start_t, dtype=torch.float64),
            "start_t": torch.tensor(schedule.start_t, dtype=torch.float64),
            "end_t": torch.tensor(schedule.end_t, dtype=torch.float64),
        }
        for stage in range(schedule.num_stages):
            timesteps, t = schedule.stage_grid(stage, steps[stage], entry["shift"])
            table = schedule.stage_timesteps(stage)
            ours |= {f"stage{stage}.Timesteps": timesteps, f"stage{stage}.t": t,
                     f"stage{stage}.Timesteps_per_stage": table,
                     f"stage{stage}.Timesteps_per_stage_ends": table[[0, -1]]}
            if stage > 0:
                ours[f"stage{stage}.renoise_alpha_beta"] = torch.tensor(schedule.renoise(stage), dtype=torch.float64)
        for name, value in ours.items():
            if prefix + name in tensors:
                close(value, tensors[prefix + name], tol, prefix + name)
                compared.add(prefix + name)
    assert compared == set(tensors), f"tensors not checked: {sorted(set(tensors) - compared)[:5]}"


# ----------------------------------------------------------------------------------------------- full cascades

@pytest.mark.parametrize("case", cascade_cases())
def test_pixelflow_cascade_replays_fixture_run(case) -> None:
    trace = Trace()
    final, schedule, steps, guidance = run_fixture_cascade(case, trace=trace)
    tensors = case.tensors
    step_tol, final_tol = tolerance(case, "cascade_step"), tolerance(case, "cascade_final")
    compared = set()
    for name, value in trace.values.items():
        key = f"cascade.{name}"
        if key in tensors:
            close(value, tensors[key], final_tol if name == "final_latents" else step_tol, key)
            compared.add(key)
    per_step = {key for key in tensors if STEP_RECORD.match(key)}
    assert per_step and per_step <= compared, f"per-step records not reproduced: {sorted(per_step - compared)[:5]}"
    close(pixels_to_image(final), tensors["cascade.samples_nhwc"], final_tol, "samples_nhwc")
    assert trace.nfe == sum(steps)

    sched_tol = tolerance(case, "scheduler")
    head_dim = case.config["model_params"]["attention_head_dim"]
    for stage in range(schedule.num_stages):
        timesteps, t = schedule.stage_grid(stage, steps[stage], case.config["sampler_args"]["shift"])
        prefix = f"cascade.s{stage}."
        close(timesteps, tensors[prefix + "Timesteps"], sched_tol, prefix + "Timesteps")
        close(t, tensors[prefix + "t"], sched_tol, prefix + "t")
        close(torch.tensor([guidance[stage]], dtype=torch.float64), tensors[prefix + "guidance_scale"], sched_tol,
              prefix + "guidance_scale")
        grid = int(tensors[prefix + "latent_size"])
        resolution = case.config["sampler_args"]["width"] // 2 ** (schedule.num_stages - 1 - stage)
        assert grid == resolution // case.config["model_params"]["patch_size"]
        close(pixelflow_rope_table(grid, head_dim), tensors[prefix + "pos_embed"], tolerance(case, "forward"),
              prefix + "pos_embed")
        if stage > 0:
            close(torch.tensor(schedule.renoise(stage), dtype=torch.float64), tensors[prefix + "renoise_alpha_beta"],
                  sched_tol, prefix + "renoise_alpha_beta")


@pytest.mark.parametrize("case", cascade_cases())
def test_block_noise_from_recorded_draws(case) -> None:
    """The factor is compared through the covariance it gives: with gamma = -1/3 the covariance is singular but for
    its 1e-6 jitter, so the last pivot of a float32 Cholesky is set by rounding and differs between LAPACK builds
    (0.00189 in the fixtures, 0.00195 on an AVX-512 EPYC); the recorded draws are then correlated with the recorded
    factor, which checks the block layout exactly."""
    tensors = case.tensors
    recorded = tensors["cascade.block_noise_cholesky_L"]
    cholesky = block_cholesky(case.config.get("scheduler", {}).get("gamma", DEFAULT_GAMMA))
    assert torch.equal(cholesky, cholesky.tril())
    close(cholesky @ cholesky.T, recorded @ recorded.T, tolerance(case, "forward"), "covariance")
    raw = {key: value for key, value in tensors.items() if key.endswith(".block_noise_raw_eps")}
    assert raw, "no block-noise draws recorded"
    for key, eps in raw.items():
        expected = tensors[key.replace("_raw_eps", "")]
        close(correlate_blocks(eps, recorded, tuple(expected.shape)), expected, tolerance(case, "forward"), key)


# --------------------------------------------------------------------------------------------------- dopri5

def test_dopri5_solves_a_known_ode_within_tolerance() -> None:
    """dy/dt = -2 t y + cos(t) components; compare with a 4000-step RK4 reference."""
    y0 = torch.tensor([1.0, -0.5, 2.0], dtype=torch.float64)
    rates = torch.tensor([1.0, 3.0, 0.5], dtype=torch.float64)

    def f(t: float, y: torch.Tensor) -> torch.Tensor:
        return -rates * y + torch.cos(torch.tensor(5.0 * t, dtype=torch.float64))

    def rk4(steps: int) -> torch.Tensor:
        y, h = y0.clone(), 1.0 / steps
        for i in range(steps):
            t = i * h
            k1 = f(t, y)
            k2 = f(t + h / 2, y + h / 2 * k1)
            k3 = f(t + h / 2, y + h / 2 * k2)
            k4 = f(t + h, y + h * k3)
            y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        return y

    calls = []
    result = dopri5(lambda t, y: calls.append(t) or f(t, y), y0, 0.0, 1.0, atol=1e-8, rtol=1e-6)
    torch.testing.assert_close(result, rk4(4000), atol=1e-6, rtol=1e-6)
    assert 10 < len(calls) < 500  # adaptive: far fewer calls than the reference, more than one step


def test_dopri5_refuses_backward_time() -> None:
    with pytest.raises(ValueError, match="forward in time"):
        dopri5(lambda t, y: y, torch.ones(1), 1.0, 0.0)


def fixed_grid_euler(steps: int):
    """A fine-step reference solver: ``steps`` Euler steps on the dopri5 time map (local [0, 1] -> timestep range)."""

    def solve(problem: StageProblem) -> torch.Tensor:
        first, last = problem.timestep_range
        t = torch.linspace(problem.t[0].item(), 1.0, steps + 1, dtype=torch.float64)
        fine = StageProblem(problem.stage, problem.num_stages, problem.x, t, first + (last - first) * t[:-1],
                            problem.timestep_range, problem.window_end, problem.velocity, problem.report)
        return euler_stage(fine)

    return solve


def tight_dopri5(problem: StageProblem) -> torch.Tensor:
    return dopri5_stage(problem, atol=1e-7, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("case", cascade_cases())
def test_dopri5_cascade_matches_a_fine_step_reference(case) -> None:
    """Stated tolerance, against 800 Euler steps per stage on the same time map: at the official tolerances
    (atol 1e-6, rtol 1e-3) the RMS difference is below 2e-2 (the coarse fixture run's is ~10x larger); at
    rtol 1e-5 the solver converges to the reference, max difference below 1e-2 (Euler's own error included)."""
    official, _, _, _ = run_fixture_cascade(case, solver=STAGE_SOLVERS["dopri5"])
    tight, _, _, _ = run_fixture_cascade(case, solver=tight_dopri5)
    reference, _, _, _ = run_fixture_cascade(case, solver=fixed_grid_euler(800))
    rms = (official - reference).pow(2).mean().sqrt().item()
    assert rms < 2e-2
    assert rms < (case.tensors["cascade.final_latents"] - reference).pow(2).mean().sqrt().item() / 5
    assert (tight - reference).abs().max().item() < 1e-2


# -------------------------------------------------------------------------------------- sizes, guidance, img2img

def test_check_size_names_valid_sizes() -> None:
    check_size(256, 4, 4)
    with pytest.raises(ValueError, match="multiple of 32 \\(e.g. 256 or 288\\)"):
        check_size(260, 4, 4)
    with pytest.raises(ValueError, match="multiple of 32"):
        check_size(16, 4, 4)


def test_guidance_schedules() -> None:
    assert stage_guidance(2.4, 4, "official", class_conditional=True) == pytest.approx([1, 1.2333333, 1.9333333, 2.4])
    assert stage_guidance(4.0, 3, "official", class_conditional=False) == [4.0] * 3
    assert stage_guidance(3.0, 3, "linear", class_conditional=True) == [1.0, 2.0, 3.0]
    assert stage_guidance(3.0, 2, "constant", class_conditional=True) == [3.0, 3.0]
    with pytest.raises(ValueError, match="defined for 4 stages, this model has 3"):
        stage_guidance(3.0, 3, "official", class_conditional=True)


def test_entry_point_moves_later_as_strength_falls() -> None:
    schedule = cascade_schedule(1000, 4)
    steps = [10, 10, 10, 10]
    assert entry_point(schedule, steps, 1.0, 1.0) == (0, 0)
    entries = [entry_point(schedule, steps, 1.0, s) for s in (0.9, 0.7, 0.5, 0.3, 0.1, 0.001)]
    assert entries == sorted(entries) and entries[0] == (0, 4) and entries[-1] == (3, 9)  # (3, 9): the last step
    assert entry_point(schedule, steps, 1.0, 0.5)[0] == 2
    with pytest.raises(ValueError, match="strength"):
        entry_point(schedule, steps, 1.0, 0.0)


@pytest.mark.parametrize("case", cascade_cases())
def test_image_to_image_runs_fewer_steps_and_full_strength_is_generation(case) -> None:
    args = case.config["sampler_args"]
    model = fixture_model(case)
    schedule = cascade_schedule(**{k: v for k, v in case.config.get("scheduler", {}).items()})
    steps = args["num_inference_steps"] if isinstance(args["num_inference_steps"], list) else \
        [args["num_inference_steps"]] * schedule.num_stages
    batch, size = len(args["prompt"]), args["width"]
    condition = fixture_condition(case.tensors, batch)
    velocity = GuidedVelocity(model, condition, [2.0] * schedule.num_stages, patch_size=model.config.patch_size,
                              head_dim=model.config.attention_head_dim, use_cfg=True)
    image = torch.rand(batch, 3, size, size) * 2 - 1

    def run(strength: float, image=image) -> tuple[torch.Tensor, int]:
        calls = []

        def counted(x, timestep, stage):
            calls.append(stage)
            return velocity(x, timestep, stage)

        with torch.no_grad():
            out = sample_cascade(counted, schedule, batch=batch, size=size, steps=steps, shift=1.0,
                                 noise=SeededPixelFlowNoise(7), solvers=[euler_stage] * schedule.num_stages,
                                 device=torch.device("cpu"), image=image, strength=strength)
        return out, len(calls)

    generated, nfe_full = run(1.0, image=None)
    full_strength, nfe_same = run(1.0)
    torch.testing.assert_close(full_strength, generated, atol=0, rtol=0)
    half, nfe_half = run(0.5)
    assert nfe_same == nfe_full and 0 < nfe_half < nfe_full
    assert half.shape == image.shape and torch.isfinite(half).all()
    kept, nfe_last = run(1e-4)
    assert nfe_last <= 1 and (kept - image).abs().max() < 0.05  # at most the final short step remains


def test_non_finite_model_output_is_a_clear_error() -> None:
    schedule = cascade_schedule(1000, 2)

    def broken(x, timestep, stage):
        return torch.full_like(x, float("nan"))

    with pytest.raises(FloatingPointError, match="NaN or infinite values in stage 0"):
        sample_cascade(broken, schedule, batch=1, size=8, steps=[2, 2], shift=1.0, noise=SeededPixelFlowNoise(0),
                       solvers=[euler_stage] * 2, device=torch.device("cpu"))
