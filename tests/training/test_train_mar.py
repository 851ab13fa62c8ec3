"""Training code of the built-in tiny MAR and its KL VAE (issue "Built-in models II"): the objective's pieces against
their definitions, the latent-scale fold, determinism and learning, the saved files through the pack's loaders and
sampler node, the evaluation's cases, and the scripts from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from flowar.models.kl16 import AutoencoderKL
from flowar.models.mar_release import load_kl16, load_mar
from flowar.models.shapes import CLASS_NAMES
from flowar.nodes.mar import FlowARMARLoader, FlowARMARSampler, FlowARMARVAELoader
from flowar.nodes.masks import FlowARRegionMask
from flowar.samplers.mar.diffusion import diffusion_schedule, p_sample, predicted_gaussian
from flowar.tooling import mar_eval
from flowar.train.loop import train_modules, world_batch
from flowar.train.mar_c2i import SHAPES_MAR, build_mar, c2i_loss, save_mar
from flowar.train.mar_objective import gaussian_nll, masked_count, normal_kl, random_mask
from flowar.train.mar_vae import (DECODER_NOISE, SHAPES_KL, build_vae, noised_latent, normalise_latent_scale,
                                  reconstruct, save_vae, vae_loss)
from support.fixtures import REPO_ROOT
from support.micro_mar import MICRO_KL, MICRO_MAR, QUICK, micro_vae, write_micro_mar


def test_masked_counts_cover_every_count_the_sampler_visits_and_masks_follow_random_orders() -> None:
    generator = torch.Generator().manual_seed(0)
    counts = torch.tensor([masked_count(64, generator) for _ in range(6400)])
    assert counts.min() == 1 and counts.max() == 64  # one token left to predict .. all 64
    assert torch.bincount(counts, minlength=65)[1:].min() > 50  # uniform: 100 expected per count
    mask = random_mask(6, 64, 46, torch.Generator().manual_seed(1))
    assert mask.sum(dim=1).tolist() == [46.0] * 6
    assert len({tuple(row.tolist()) for row in mask}) == 6


def test_bound_terms_are_the_gaussian_kl_and_likelihood() -> None:
    generator = torch.Generator().manual_seed(2)
    m1, m2, x = (torch.randn(5, 3, generator=generator) for _ in range(3))
    v1, v2 = (torch.randn(5, 3, generator=generator) for _ in range(2))
    reference = kl_divergence(Normal(m1, (0.5 * v1).exp()), Normal(m2, (0.5 * v2).exp()))
    torch.testing.assert_close(normal_kl(m1, v1, m2, v2), reference)
    torch.testing.assert_close(gaussian_nll(x, m2, v2), -Normal(m2, (0.5 * v2).exp()).log_prob(x))


def test_per_row_gaussian_equals_the_sampler_step_at_each_timestep() -> None:
    schedule = diffusion_schedule(1000, 1000)
    generator = torch.Generator().manual_seed(3)
    output, x = torch.randn(4, 8, generator=generator), torch.randn(4, 4, generator=generator)
    t = torch.tensor([0, 1, 500, 999])
    rows = predicted_gaussian(output, x, t, schedule)
    for row, index in enumerate(t.tolist()):
        step = p_sample(output[row:row + 1], x[row:row + 1], index, schedule, torch.zeros(1, 4), 1.0)
        torch.testing.assert_close(rows.mean[row:row + 1], step.mean)
        torch.testing.assert_close(rows.log_variance[row:row + 1], step.log_variance)


def test_diffusion_head_starts_predicting_eps_equal_to_its_input_and_its_blocks_see_the_token() -> None:
    """What the sampler's first step needs (``start_head_at_identity``): eps = x_t within the ~3e-3 it tolerates,
    variance channels 0; and the residual blocks' LayerNorm still passes the token at a fifth of its size."""
    torch.manual_seed(0)
    model = build_mar(SHAPES_MAR)["mar"]
    net = model.diffloss.net
    x = torch.randn(512, SHAPES_MAR.token_dim)
    with torch.no_grad():
        output = model.denoise(x, torch.randint(0, 1000, (512,)), torch.randn(512, SHAPES_MAR.decoder_embed_dim))
        seen = net.res_blocks[0].in_ln(net.input_proj(x))[:, :SHAPES_MAR.token_dim]  # (512, C)
    error = output[:, :SHAPES_MAR.token_dim] - x
    assert error.square().mean().sqrt() < 3e-3  # a zero-initialised head: rms 1
    assert output[:, SHAPES_MAR.token_dim:].abs().max() == 0
    assert 0.15 < seen.std() / x.std() < 0.25


def test_latent_fold_gives_unit_tokens_and_the_same_images() -> None:
    torch.manual_seed(0)
    vae = AutoencoderKL(MICRO_KL).eval()
    images = world_batch(5, 0, 16)[0]
    before = vae.decode_tokens(vae.encode_tokens(images))
    factor = normalise_latent_scale(vae, images)
    assert factor != pytest.approx(1.0)
    assert vae.encode_tokens(images).std().item() == pytest.approx(1.0, rel=1e-4)
    torch.testing.assert_close(vae.decode_tokens(vae.encode_tokens(images)), before, atol=1e-4, rtol=1e-4)


def test_decoder_noise_is_per_image_seeded_and_measured_against_the_latent_spread() -> None:
    """l-DeTok's decoder noise: each image gets its own level in [0, DECODER_NOISE) times the latent std, so a
    latent ten times larger is noised ten times more and never drowned."""
    latent = torch.randn(64, 4, 8, 8)
    noise = noised_latent(latent, torch.Generator().manual_seed(0)) - latent
    assert torch.equal(noise, noised_latent(latent, torch.Generator().manual_seed(0)) - latent)
    per_image = noise.flatten(1).std(dim=1) / latent.std()
    assert per_image.max() < DECODER_NOISE * 1.2 and per_image.min() < 0.2 * DECODER_NOISE
    assert per_image.std() > 0.1 * DECODER_NOISE  # levels differ between images
    scaled = noised_latent(10 * latent, torch.Generator().manual_seed(0)) - 10 * latent
    assert torch.allclose(scaled, 10 * noise, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_vae_and_mar_losses_are_seeded_and_fall() -> None:
    first = train_modules(build_vae, vae_loss, seed=0, steps=1, settings=QUICK, log=lambda _: None).losses
    assert first == train_modules(build_vae, vae_loss, seed=0, steps=1, settings=QUICK, log=lambda _: None).losses
    vae_losses = train_modules(lambda: torch.nn.ModuleDict({"vae": AutoencoderKL(MICRO_KL)}), vae_loss, seed=0,
                               steps=30, settings=QUICK, log=lambda _: None).losses
    assert sum(vae_losses[-5:]) < 0.6 * sum(vae_losses[:5])
    vae = micro_vae()
    mar_losses = train_modules(lambda: build_mar(MICRO_MAR), c2i_loss(vae), seed=0, steps=30, settings=QUICK,
                               log=lambda _: None).losses
    again = train_modules(lambda: build_mar(MICRO_MAR), c2i_loss(vae), seed=0, steps=2, settings=QUICK,
                          log=lambda _: None).losses
    assert again == mar_losses[:2]
    assert sum(mar_losses[-5:]) < 0.9 * sum(mar_losses[:5])  # 0.83 measured on the noise-trained micro VAE


def test_saved_models_load_through_the_nodes_and_inpaint_keeping_the_known_half(models_dir: Path) -> None:
    mar_path, vae_path = write_micro_mar(models_dir)
    checkpoint = torch.load(mar_path, weights_only=True)
    assert {"model", "model_ema", "training"} <= set(checkpoint)
    assert not all(torch.equal(checkpoint["model"][k], checkpoint["model_ema"][k]) for k in checkpoint["model"])
    assert load_mar(mar_path)[0].config == MICRO_MAR and load_kl16(vae_path)[0].config == MICRO_KL
    assert "micro-c2i.pth" in FlowARMARLoader.INPUT_TYPES()["required"]["ckpt_name"][0]
    model = FlowARMARLoader().load("micro-c2i.pth", "model_ema", "fp32")[0]
    vae = FlowARMARVAELoader().load("micro-kl.ckpt", "fp32")[0]
    options = dict(seed=3, num_iter=4, cfg=4.0, cfg_schedule="constant", temperature=1.0, diffusion_steps=5,
                   batch_size=1, class_index=2)
    image, latent = FlowARMARSampler().sample(model, vae, **options)
    assert image.shape == (1, 32, 32, 3) and torch.equal(image, FlowARMARSampler().sample(model, vae, **options)[0])
    mask = FlowARRegionMask().make(image, "right", 0.5)[0]
    _, completed = FlowARMARSampler().sample(model, vae, **options, image=image, mask=mask)
    assert completed.known[0].view(8, 8)[:, :4].all() and not completed.known[0].view(8, 8)[:, 4:].any()
    source = vae.vae.encode_tokens(image.permute(0, 3, 1, 2) * 2 - 1)  # (1, C, 8, 8) the node's own encoding
    assert torch.equal(completed.latents[..., :4], source[..., :4])
    assert not torch.equal(completed.latents[..., 4:], source[..., 4:])


def test_inpainting_cases_take_classes_in_turn_with_an_object_in_the_left_half() -> None:
    cases = mar_eval.inpaint_cases(30)
    assert [case.class_index for case in cases] == [k % len(CLASS_NAMES) for k in range(30)]
    assert all(any(obj.bbox[0] < 16 for obj in case.objects) for case in cases)
    assert len({case.seed for case in cases}) == 30 and min(case.seed for case in cases) >= mar_eval.INPAINT_SEED
    known = mar_eval.left_half_known(2, 8)
    assert known.shape == (2, 64) and known[0].view(8, 8)[:, :4].all() and not known[0].view(8, 8)[:, 4:].any()


def test_reconstruction_is_quantised_and_reported_per_image() -> None:
    vae = micro_vae()
    images = torch.rand(2, 32, 32, 3)
    rebuilt = reconstruct(vae, images)
    assert rebuilt.shape == images.shape and torch.equal(rebuilt, (rebuilt * 255).round() / 255)


@pytest.mark.slow
@pytest.mark.parametrize("script, extra", [("mar_vae", []), ("mar_c2i", ["--vae"])])
def test_training_scripts_run_from_the_repository_root(script: str, extra: list[str], tmp_path: Path) -> None:
    if extra:  # an untrained VAE of the shipped shape: the script checks nothing of its quality
        extra = ["--vae", str(save_vae(AutoencoderKL(SHAPES_KL).eval(), tmp_path / "vae.ckpt", {}))]
    out = tmp_path / "out" / "model.pth"
    result = subprocess.run([sys.executable, "-m", f"flowar.train.{script}", "--out", str(out), "--steps", "2",
                             "--batch-size", "4", *extra], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 steps in" in result.stdout and "MB)" in result.stdout
    assert out.is_file() and out.with_suffix(".json").is_file()


@pytest.mark.slow
def test_learning_curve_evaluates_every_snapshot_of_a_run(tmp_path: Path) -> None:
    vae = micro_vae()
    result = train_modules(lambda: build_mar(MICRO_MAR), c2i_loss(vae), seed=0, steps=2, settings=QUICK,
                           log=lambda _: None)
    for step in (1, 2):
        save_mar(result.ema["mar"], result.raw["mar"], tmp_path / f"step{step:06d}" / "checkpoint.pth",
                 {"steps": step, "minutes": 0.5 * step})
    table = mar_eval.snapshot_curve(tmp_path, vae, samples=2).splitlines()
    assert len(table) == 4 and table[2].startswith("| 1 | 0.5 | ") and table[3].startswith("| 2 | 1.0 | ")
    assert all("/2) |" in row for row in table[2:])
