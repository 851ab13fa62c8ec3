"""MAR nodes in-process (standalone bridge): tiny checkpoints in the official containers -> loaders -> sampler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.checkpoints import write_mar, write_model_container

from flowar.models.checkpoint import CheckpointError
from flowar.models.kl16 import AutoencoderKL, KL16Config
from flowar.models.mar import MAR, MARConfig
from flowar.nodes.mar import (
    FlowARMARLoader,
    FlowARMARSampler,
    FlowARMARVAEDecode,
    FlowARMARVAEEncode,
    FlowARMARVAELoader,
)

TINY_MAR = {"encoder_embed_dim": 16, "encoder_depth": 1, "encoder_num_heads": 2, "decoder_embed_dim": 16,
            "decoder_depth": 1, "decoder_num_heads": 2, "diffloss_d": 1, "diffloss_w": 16, "img_size": 64,
            "class_num": 10, "buffer_size": 2}
TINY_VAE = {"embed_dim": 16, "ch_mult": [1, 1, 1, 1, 1], "ch": 32, "num_res_blocks": 1, "resolution": 64}
SAMPLER = {"seed": 5, "num_iter": 3, "cfg": 3.0, "cfg_schedule": "linear", "temperature": 1.0, "diffusion_steps": 4,
           "batch_size": 2, "class_index": 3}


def randomised(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.2)
    return module.state_dict()


@pytest.fixture
def mar_files(models_dir: Path) -> tuple[str, str]:
    model = MAR(MARConfig.from_params(TINY_MAR))
    write_mar(models_dir / "mar" / "tiny" / "checkpoint-last.pth", randomised(model, 0), TINY_MAR)
    vae = AutoencoderKL(KL16Config.from_params(TINY_VAE))
    write_model_container(models_dir / "vq" / "tiny_kl16.ckpt", randomised(vae, 1), TINY_VAE)
    return "tiny/checkpoint-last.pth", "tiny_kl16.ckpt"


def loaded(mar_files, weights: str = "model_ema"):
    model = FlowARMARLoader().load(mar_files[0], weights, "fp32")[0]
    vae = FlowARMARVAELoader().load(mar_files[1], "fp32")[0]
    return model, vae


def sample(model, vae, **overrides):
    return FlowARMARSampler().sample(model, vae, **{**SAMPLER, **overrides})


def test_loaders_list_files_and_pick_the_ema_weights(mar_files) -> None:
    assert mar_files[0] in FlowARMARLoader.INPUT_TYPES()["required"]["ckpt_name"][0]
    assert mar_files[1] in FlowARMARVAELoader.INPUT_TYPES()["required"]["vae_name"][0]
    ema, _ = loaded(mar_files)
    raw, _ = loaded(mar_files, weights="model")
    assert torch.equal(raw.model.z_proj.weight, ema.model.z_proj.weight + 1)  # write_mar perturbs ``model``
    assert ema.source.endswith("checkpoint-last.json")


def test_sampler_gives_images_and_same_seed_same_image(mar_files) -> None:
    model, vae = loaded(mar_files)
    image, latent = sample(model, vae)
    assert image.shape == (2, 64, 64, 3) and 0 <= image.min() and image.max() <= 1
    assert latent.latents.shape == (2, 16, 4, 4) and latent.known is None
    again, _ = sample(model, vae)
    assert torch.equal(image, again)
    assert not torch.equal(image, sample(model, vae, seed=6)[0])
    decoded = FlowARMARVAEDecode().decode(vae, latent)[0]
    torch.testing.assert_close(decoded, image)


def test_inpainting_keeps_known_tokens(mar_files) -> None:
    model, vae = loaded(mar_files)
    picture = torch.rand(1, 64, 64, 3)
    mask = torch.zeros(1, 64, 64)
    mask[:, 32:, :] = 1.0  # regenerate the bottom half: tokens of rows 2-3
    mask[0, 20, 5] = 1.0  # one pixel masks its whole token (row 1, column 0)
    _, latent = sample(model, vae, image=picture, mask=mask)
    encoded = FlowARMARVAEEncode().encode(vae, picture.expand(2, -1, -1, -1), 64)[0].latents
    known = latent.known.reshape(2, 4, 4)
    assert known[:, :2].sum() == 2 * 7 and not known[:, 2:].any() and not known[:, 1, 0].any()
    tokens = latent.latents.permute(0, 2, 3, 1)  # (B, 4, 4, 16)
    reference = encoded.permute(0, 2, 3, 1)
    torch.testing.assert_close(tokens[known], reference[known], atol=1e-5, rtol=0)  # (encoder batch rounding only)
    assert not torch.allclose(tokens[~known], reference[~known])


@pytest.mark.parametrize(("overrides", "message"), [
    ({"class_index": 10}, "class_index 10 is out of range"),
    ({"image": torch.rand(1, 64, 64, 3)}, "needs both an image and a mask"),
    ({"image": torch.rand(1, 64, 64, 3), "mask": torch.zeros(1, 32, 64)}, "the mask is 64x32 but the image is 64x64"),
    ({"image": torch.rand(3, 64, 64, 3), "mask": torch.zeros(1, 64, 64)}, "image batch 3 must be 1"),
    ({"cfg_schedule": "cosine"}, "unknown cfg schedule"),
])
def test_bad_sampler_inputs_are_clear_errors(mar_files, overrides: dict, message: str) -> None:
    model, vae = loaded(mar_files)
    with pytest.raises(ValueError, match=message):
        sample(model, vae, **overrides)


def test_vae_of_another_kind_is_refused(mar_files, models_dir: Path) -> None:
    model, _ = loaded(mar_files)
    other = {**TINY_VAE, "embed_dim": 8}
    write_model_container(models_dir / "vq" / "other.ckpt", randomised(AutoencoderKL(KL16Config.from_params(other)), 2),
                          other)
    vae = FlowARMARVAELoader().load("other.ckpt", "fp32")[0]
    with pytest.raises(ValueError, match="expects 16 channels at stride 16: load MAR's kl16.ckpt"):
        sample(model, vae)
    with pytest.raises(ValueError, match="this VAE decodes 8"):
        FlowARMARVAEDecode().decode(vae, sample(model, loaded(mar_files)[1])[1])


def test_checkpoint_of_another_family_is_named(mar_files, models_dir: Path) -> None:
    torch.save({"model": {"quantize.embedding.weight": torch.zeros(2, 2),
                          "encoder.conv_blocks.0.res.0.conv1.weight": torch.zeros(2)}}, models_dir / "vq" / "vq.pt")
    with pytest.raises(CheckpointError, match="VQ"):
        FlowARMARVAELoader().load("vq.pt", "fp32")
    with pytest.raises(CheckpointError, match="MAR"):
        FlowARMARVAELoader().load("../mar/tiny/checkpoint-last.pth", "fp32")
