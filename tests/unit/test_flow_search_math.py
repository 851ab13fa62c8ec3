"""Flow-search math against the fixtures: interpolants, SNR inversions, time grids, velocity conversion (official
and x0/eps forms), Tweedie, score, every diffusion coefficient, drift, one Euler-Maruyama step, and the equivalence
with a ComfyUI denoiser.

Each test runs on every flow_search case holding its tensor group; sizes come from the tensors, tolerances from the
case's ``config.json``.
"""

from __future__ import annotations

import re

import pytest
import torch
from support.fixtures import case_params

from flowar.samplers.flow_search import interpolants as fi
from flowar.samplers.flow_search.grid import counter_start, exp_grid, exp_time
from flowar.samplers.flow_search.sde import DIFFUSION_COEFFICIENTS, diffusion_coefficient, euler_maruyama, sde_drift

SCHEDULE = re.compile(r"^(schedule_M\d+)\.r$")


def cases_with(group: str | re.Pattern) -> list:
    """The flow_search cases with tensors ``<group>.*`` (or a name matching the pattern), else one skip."""
    def holds(key: str) -> bool:
        return bool(group.match(key)) if isinstance(group, re.Pattern) else key.startswith(f"{group}.")

    params = case_params("flow_search")
    chosen = [p for p in params if p.values[0] is not None and any(holds(key) for key in p.values[0].tensors)]
    label = group.pattern if isinstance(group, re.Pattern) else f"{group}.*"
    return chosen or [pytest.param(None, marks=pytest.mark.skip(reason=f"no flow_search case records {label}"))]


def close(case, actual: torch.Tensor, name: str) -> None:
    expected = case.tensors[name]
    tol = case.config["tolerances_float32"]
    torch.testing.assert_close(actual.to(expected.dtype), expected, atol=tol["atol"], rtol=tol["rtol"], msg=name)


def beta_range(case) -> tuple[float, float]:
    return case.config.get("vp_beta_min", fi.VP_BETA_MIN), case.config.get("vp_beta_max", fi.VP_BETA_MAX)


@pytest.mark.parametrize("case", cases_with("vp_coeffs"))
def test_flow_search_vp_coefficients(case) -> None:
    coefficients = fi.vp_coefficients(case.tensors["vp_coeffs.r"], *beta_range(case))
    for field in fi.Coefficients._fields:
        close(case, getattr(coefficients, field), f"vp_coeffs.{field}")


@pytest.mark.parametrize("case", cases_with("snr_inverse"))
def test_flow_search_snr_inversions(case) -> None:
    snr = case.tensors["snr_inverse.snr"]
    close(case, fi.linear_snr_inverse(snr), "snr_inverse.condot_t")
    close(case, fi.vp_snr_inverse(snr, *beta_range(case)), "snr_inverse.vp_r")
    vp = fi.vp_coefficients(fi.vp_snr_inverse(snr))  # round trip: the VP time really has that SNR
    torch.testing.assert_close(vp.alpha / vp.sigma, snr, rtol=1e-4, atol=0)


@pytest.mark.parametrize("case", cases_with("time_exp"))
def test_flow_search_exp_time_map(case) -> None:
    close(case, exp_time(case.tensors["time_exp.s"]) * 1000.0, "time_exp.r_times_1000")
    assert exp_time(torch.tensor([counter_start(0.3)])).item() == pytest.approx(0.3, abs=1e-6)


@pytest.mark.parametrize("case", cases_with(SCHEDULE))
def test_flow_search_released_schedule_table(case) -> None:
    for group in [m[1] for key in case.tensors if (m := SCHEDULE.match(key))]:
        steps = case.tensors[f"{group}.r"].numel() - 1
        times = exp_grid(steps).times
        close(case, times, f"{group}.r")
        flow_t, scale = fi.Interpolant("vp").flow_point(times)
        close(case, flow_t, f"{group}.flow_t")
        close(case, scale, f"{group}.c")


@pytest.mark.parametrize("case", cases_with("velconv"))
def test_flow_search_velocity_conversion_both_forms(case) -> None:
    t = case.tensors
    x, model_out, r = t["velconv.x"], t["velconv.U"], t["velconv.r"]
    conversion = fi.linear_to_vp(r, *beta_range(case))
    for field, name in (("flow_t", "flow_t"), ("scale", "s_r"), ("dt_dr", "dt_dr"), ("ds_dr", "ds_dr")):
        close(case, getattr(conversion, field), f"velconv.{name}")
    x_in = x / fi.per_sample(conversion.scale, x)
    close(case, x_in, "velconv.model_in_x")
    close(case, conversion.flow_t * 1000.0, "velconv.model_in_t_times_1000")
    close(case, fi.vp_velocity_official(x, model_out, conversion), "velconv.u_r")
    x0 = x_in - fi.per_sample(conversion.flow_t, x) * model_out  # what a CONST model's denoiser returns
    eps = fi.eps_prediction(x_in, x0, conversion.flow_t)
    close(case, fi.velocity_from_predictions(x0, eps, fi.vp_coefficients(r, *beta_range(case))), "velconv.u_r")


@pytest.mark.parametrize("case", cases_with("tweedie"))
def test_flow_search_tweedie_and_score(case) -> None:
    t = case.tensors
    x, u, r = t["tweedie.x"], t["tweedie.u"], t["tweedie.r"]
    for kind, coefficients in (("vp", fi.vp_coefficients(r, *beta_range(case))), ("linear", fi.linear_coefficients(r))):
        close(case, fi.tweedie(x, u, coefficients), f"tweedie.{kind}")
        if f"score.{kind}" in t:
            close(case, fi.score_from_velocity(x, u, coefficients), f"score.{kind}")


@pytest.mark.parametrize("case", cases_with("diffuse"))
def test_flow_search_every_diffusion_coefficient(case) -> None:
    r = case.tensors["tweedie.r"]
    norm = case.config.get("diffusion_norm", 3.0)
    recorded = sorted(key.split(".", 1)[1] for key in case.tensors if key.startswith("diffuse."))
    assert set(recorded) <= set(DIFFUSION_COEFFICIENTS), f"unknown recorded coefficients {recorded}"
    for name in recorded:
        close(case, diffusion_coefficient(r, name, norm, fi.vp_coefficients(r, *beta_range(case))), f"diffuse.{name}")


@pytest.mark.parametrize("case", cases_with("drift"))
def test_flow_search_drift_and_euler_maruyama_step(case) -> None:
    t = case.tensors
    norm = case.config.get("diffusion_norm", 3.0)
    x, u, r = t["tweedie.x"], t["tweedie.u"], t["tweedie.r"]
    g = diffusion_coefficient(r, "square", norm)
    close(case, sde_drift(x, u, fi.vp_coefficients(r, *beta_range(case)), g), "drift.vp_square3")
    close(case, sde_drift(x, u, fi.vp_coefficients(r), torch.zeros_like(r)), "drift.ode")
    r, r_next = t["step.r"], t["step.r_next"]
    g = diffusion_coefficient(r, "square", norm)  # at the CURRENT time only
    drift = sde_drift(t["step.x"], t["step.u"], fi.vp_coefficients(r, *beta_range(case)), g)
    close(case, euler_maruyama(t["step.x"], drift, g, r - r_next, t["step.noise"]), "step.out")


@pytest.mark.parametrize("case", cases_with("comfy"))
def test_flow_search_comfyui_denoiser_gives_the_official_vp_quantities(case) -> None:
    t = case.tensors
    xbar, r, x0 = t["comfy.xbar"], t["comfy.r"], t["comfy.D"]
    sigma, scale = fi.Interpolant("vp", *beta_range(case)).flow_point(r)
    close(case, sigma, "comfy.sigma")
    x_in = xbar / fi.per_sample(scale, xbar)
    close(case, x_in, "comfy.x_in")
    eps = fi.eps_prediction(x_in, x0, sigma)
    coefficients = fi.vp_coefficients(r, *beta_range(case))
    velocity = fi.velocity_from_predictions(x0, eps, coefficients)
    close(case, velocity, "comfy.u_r")
    close(case, fi.tweedie(xbar, velocity, coefficients), "comfy.tweedie")  # the official Tweedie is D itself
    close(case, -eps / fi.per_sample(coefficients.sigma, eps), "comfy.score")
    close(case, fi.score_from_velocity(xbar, velocity, coefficients), "comfy.score")


def test_flow_search_time_of_flow_sigma_inverts_flow_point() -> None:
    for kind in fi.INTERPOLANTS:
        interpolant = fi.Interpolant(kind)
        for sigma in (0.05, 0.4, 0.9):
            r = interpolant.time_of_flow_sigma(sigma)
            flow_sigma, _ = interpolant.flow_point(torch.tensor([r]))
            assert flow_sigma.item() == pytest.approx(sigma, abs=1e-6), (kind, sigma)
    with pytest.raises(ValueError, match="unknown interpolant"):
        fi.Interpolant("cosine")


def test_flow_search_exp_grid_is_the_official_grid_and_ends_at_zero() -> None:
    grid = exp_grid(4)
    expected = torch.sqrt(1 - torch.linspace(0, 0.75, 4, dtype=torch.float64) ** 2).float()
    torch.testing.assert_close(grid.times[:-1], expected)
    assert grid.times[-1].item() == 0.0 and bool((grid.steps > 0).all())
    part_way = exp_grid(4, r_start=0.5)
    assert part_way.times[0].item() == pytest.approx(0.5, abs=1e-6) and part_way.times[-1].item() == 0.0
