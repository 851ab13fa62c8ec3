"""Flow-search glue without ComfyUI: refusals, the sampler function on a k-diffusion-style model, trace text.

The real SamplerCustomAdvanced run is in the real-ComfyUI tier (tests/comfyui/comfyui_inprocess_checks.py).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from flowar.nodes.rewards import Reward
from flowar.nodes.search import FlowARFlowSearchSampler, SearchSampler, check_searchable, settings_from, \
    stateful_patches

SETTINGS = {"method": "rbf", "max_nfe": 30, "steps": 3, "interpolant": "vp", "diffusion_norm": 3.0, "finish": "ode",
            "particles": 0, "chains": 2, "init_particles": 2, "keep_best": False, "batch_size": 0}


class ToyDenoiser:
    """Stands where ComfyUI's ``KSamplerX0Inpaint`` stands: ``model(x, sigma)`` -> x0 of a point-mass flow model
    whose data is ``target`` (so its x0 prediction is exact: D = target)."""

    def __init__(self, target: torch.Tensor) -> None:
        self.target = target
        self.calls = 0
        base = SimpleNamespace(model_sampling=object(), process_latent_out=lambda x: x)
        self.inner_model = SimpleNamespace(inner_model=base, model_patcher=SimpleNamespace(
            model=torch.nn.Identity(), load_device=torch.device("cpu")))

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **extra_args) -> torch.Tensor:
        self.calls += x.shape[0]
        return self.target.expand_as(x).clone()


def reward_from(function) -> Reward:
    return Reward("test", function)


def test_stateful_patches_are_named() -> None:
    options = {"transformer_options": {"wrappers": {"outer_sample": {"easycache": [print], "mine": [print]}}}}
    assert stateful_patches(options) == ["easycache"]
    apg = lambda args: args  # noqa: E731
    apg.__module__ = "comfy_extras.nodes_apg"
    assert stateful_patches({"sampler_pre_cfg_function": [apg]}) == ["nodes_apg"]
    assert stateful_patches({}) == []
    with pytest.raises(ValueError, match="stateful patches \\['easycache'\\]"):
        check_searchable(object(), {"model_options": options})
    with pytest.raises(ValueError, match="noise masks"):
        check_searchable(object(), {"denoise_mask": torch.ones(1)})


def test_search_sampler_function_returns_one_result_per_image_and_traces() -> None:
    target = torch.full((1, 3, 4, 4), 0.5)
    model = ToyDenoiser(target)
    sampler = SearchSampler(settings_from(**SETTINGS), reward_from(lambda images: -images.mean(dim=(1, 2, 3))))
    noise = torch.randn(2, 3, 4, 4)
    out = sampler(model, noise, torch.tensor([1.0, 0.0]), {"seed": 4})
    assert out.shape == noise.shape
    torch.testing.assert_close(out, target.expand_as(out), atol=1e-4, rtol=0)  # the flow ends at its data
    assert 0 < model.calls <= 2 * SETTINGS["max_nfe"]
    rows = [json.loads(line) for line in sampler.trace_text().splitlines()]
    assert {row["item"] for row in rows} == {0, 1} and all("nfe" in row for row in rows)


def test_pixel_space_models_need_rgb_latents_without_a_vae() -> None:
    sampler = SearchSampler(settings_from(**SETTINGS), reward_from(lambda images: images.mean(dim=(1, 2, 3))))
    base = SimpleNamespace(process_latent_out=lambda x: x)
    images = sampler.images(base, torch.zeros(2, 3, 4, 4))
    assert images.shape == (2, 4, 4, 3) and torch.allclose(images, torch.full_like(images, 0.5))
    with pytest.raises(ValueError, match="4 channels: connect the model's VAE"):
        sampler.images(base, torch.zeros(1, 4, 4, 4))


def test_settings_and_build_errors() -> None:
    with pytest.raises(ValueError, match="max_nfe"):
        settings_from(**{**SETTINGS, "max_nfe": 0})
    with pytest.raises(RuntimeError, match="inside ComfyUI"):
        FlowARFlowSearchSampler().build(reward_from(lambda images: images.mean()), **SETTINGS)
    zero_noise = settings_from(**{**SETTINGS, "diffusion_norm": 0.0})
    assert zero_noise.sde is False
