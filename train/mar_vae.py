"""Train the built-in tiny KL VAE (MAR's tokenizer) on the shapes world and save it in the official container.

Run from the repository root: ``python -m flowar.train.mar_vae --out builtin/vq/shapes-kl.ckpt --steps 2400 --seed 0``
(``--eval N`` afterwards reports the reconstruction error on N held-out world images and how often the analyser reads
a reconstruction exactly as the original). The network is our KL-16 autoencoder (:mod:`models.kl16`) at a small
width with two down-sampling levels, so a 32 px image becomes an 8x8 grid of tokens.

Objective (a plain reconstruction VAE, no adversarial or perceptual term: the world is flat colours on black):
L1 + squared error of the image decoded from a posterior sample, plus a small KL term that keeps the latents smooth
and bounded. The decoder reads the sample with extra Gaussian noise (:func:`noised_latent`), as the latent-denoising
tokenizer of Yang et al., "Latent Denoising Makes Good Visual Tokenizers" (l-DeTok, 2025) trains its decoder: a
token model's imperfect tokens then decode to clean shapes instead of notched ones. Afterwards the latent scale is
folded into the weights (:func:`normalise_latent_scale`) so that MAR's fixed ``x 0.2325`` gives tokens of unit variance,
as the released VAE does for ImageNet.

Saved as ``{"model": state_dict, "training": provenance}`` (``kl16.ckpt``'s container) beside ``<name>.json`` with the
constructor arguments, which the pack's MAR VAE loader reads.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from ..models.kl16 import AutoencoderKL, KL16Config
from ..models.mar_release import load_kl16
from ..samplers.pixels import pixels_to_image
from ..tooling.world import ShapesSample
from .loop import TrainSettings, run, run_arguments, save_container, training_autocast, world_batch
from .reconstruction import eight_bit, reconstruction_report

# 32 px -> 8x8 tokens of 8 channels; GroupNorm's 32 groups need widths that are multiples of 32.
SHAPES_KL = KL16Config(embed_dim=8, ch_mult=(1, 2, 2), ch=32, num_res_blocks=1, resolution=32,
                       encoder_attn_resolutions=(), decoder_attn_resolutions=())
KL_WEIGHT = 1e-4  # per latent element, against the per-pixel reconstruction terms
DECODER_NOISE = 0.8  # most noise the decoder reads, in units of the batch's latent std (drawn uniform 0..this)
RECIPE = TrainSettings(batch_size=64, lr=2e-3, warmup_steps=100)
NORMALISE_IMAGES = 1024  # world images that set the latent scale


def posterior_sample(mean: Tensor, logvar: Tensor, generator: torch.Generator) -> Tensor:
    """A draw of the diagonal Gaussian posterior ``N(mean, exp(logvar))`` from ``generator``."""
    return mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator)


def noised_latent(latent: Tensor, generator: torch.Generator) -> Tensor:
    """``latent`` ``(B, c, h, w)`` plus Gaussian noise of std ``u * DECODER_NOISE`` times the batch's latent std, ``u``
    uniform in [0, 1) per image.

    Why: a token model (MAR's diffusion head at temperature 1) draws tokens with errors a reconstruction-only decoder
    turns into notched, merged or rounded outlines (trained without this noise, the tiny VAE read 93% of images alike
    with N(0, 0.3²) added to its unit tokens and 34% with N(0, 1); trained with it, 100% and 91%): trained to
    reconstruct through noise, the decoder maps nearby tokens to the clean shape. The noise is measured against the
    latent's own (detached) std, so the encoder cannot outgrow it."""
    scale = DECODER_NOISE * latent.detach().std() * torch.rand(latent.shape[0], 1, 1, 1, generator=generator)
    return latent + scale * torch.randn(latent.shape, generator=generator)


def vae_loss(modules: nn.ModuleDict, images: Tensor, _samples: list[ShapesSample],
             generator: torch.Generator) -> Tensor:
    """Reconstruction of ``images`` ``[B, 3, 32, 32]`` in [-1, 1] from a posterior sample, plus the KL term
    (bf16 autocast where the CPU has native bf16, :func:`.loop.training_autocast`; the loss itself in float32)."""
    vae = modules["vae"]
    with training_autocast():
        mean, logvar = vae.encode_moments(images)  # (B, c, 8, 8) each
        mean, logvar = mean.float(), logvar.float()
        latent = noised_latent(posterior_sample(mean, logvar, generator), generator)
        decoded = vae.decoder(vae.post_quant_conv(latent)).float()
    reconstruction = (decoded - images).abs().mean() + (decoded - images).square().mean()
    kl = 0.5 * (mean.square() + logvar.exp() - 1 - logvar).mean()
    return reconstruction + KL_WEIGHT * kl


@torch.no_grad()
def normalise_latent_scale(vae: AutoencoderKL, images: Tensor) -> float:
    """Rescale the posterior so that MAR's tokens (``mean x 0.2325``) of ``images`` have unit standard deviation:
    the mean rows of ``quant_conv`` times ``a``, the log-variance rows shifted by ``2 ln a``, and ``post_quant_conv``'s
    inputs divided by ``a``: the same decoded images, tokens of the scale MAR's diffusion head expects. Returns
    ``a``."""
    channels = vae.config.embed_dim
    std = vae.encode_tokens(images).std().item()
    factor = 1.0 / std
    vae.quant_conv.weight[:channels] *= factor
    vae.quant_conv.bias[:channels] *= factor
    vae.quant_conv.bias[channels:] += 2 * math.log(factor)
    vae.post_quant_conv.weight /= factor
    return factor


def reconstruct(vae: AutoencoderKL, images: Tensor) -> Tensor:
    """IMAGE ``[B, 32, 32, 3]`` in 0..1 through the VAE (posterior mean), quantised to 8 bits as a saved PNG."""
    with torch.no_grad():
        pixels = vae.decode_tokens(vae.encode_tokens(images.permute(0, 3, 1, 2) * 2 - 1))
    return eight_bit(pixels_to_image(pixels))


def build_vae() -> nn.ModuleDict:
    return nn.ModuleDict({"vae": AutoencoderKL(SHAPES_KL)})


def save_vae(vae: AutoencoderKL, path: Path, provenance: dict) -> Path:
    """``{"model": ..., "training": ...}`` at ``path`` and the constructor arguments in ``<stem>.json`` beside it."""
    return save_container(path, {"model": vae}, vae.config, provenance)


def main(argv: list[str] | None = None) -> None:
    args = run_arguments(__doc__.split("\n\n")[0], argv, defaults=RECIPE)
    scale_images = world_batch(args.seed + 1, 0, NORMALISE_IMAGES)[0]  # another run's world: not training data

    def save(ema: nn.ModuleDict, _raw: nn.ModuleDict, path: Path, provenance: dict) -> Path:
        vae = copy.deepcopy(ema["vae"])  # the EMA keeps training when this is a snapshot
        factor = normalise_latent_scale(vae, scale_images)
        target = path if path.suffix else path / "model.ckpt"  # snapshots are folders
        return save_vae(vae, target, {"script": "train/mar_vae.py", "latent_rescale": factor, **provenance})

    run(build_vae, vae_loss, args, "tiny KL VAE", save, RECIPE)
    if args.eval:
        vae, _ = load_kl16(args.out)
        print(reconstruction_report(lambda images: reconstruct(vae, images), args.eval).line(), flush=True)


if __name__ == "__main__":
    main()
