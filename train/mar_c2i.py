"""Train the built-in tiny class-conditional MAR on the tiny KL VAE's tokens of the shapes world, and save it in the
official container.

Run from the repository root, after the VAE (:mod:`.mar_vae`): ``python -m flowar.train.mar_c2i --vae
builtin/vq/shapes-kl.ckpt --out builtin/mar/shapes-c2i.pth --steps 12000 --seed 0`` (``--eval N`` samples N images
afterwards at the sampler's defaults and prints the class accuracy; ``--snapshots DIR`` keeps the weights every
``--every`` steps). The network is our MAR (:mod:`models.mar`: encoder, decoder, diffusion MLP) at a small width on
the VAE's 8x8 token grid; the objective is :mod:`.mar_objective`; seeding and the loop: :mod:`.loop`. Tokens are
posterior samples of the frozen VAE times 0.2325, as the official ``engine_mar.py`` trains.

Saved in the container of the official ``checkpoint-last.pth``: ``{"model": raw weights, "model_ema": EMA weights,
"training": provenance}``, beside ``<name>.json`` with the constructor arguments (head counts and geometry the weights cannot tell).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..models.kl16 import LATENT_SCALE, AutoencoderKL
from ..models.mar import MAR, MARConfig, patchify
from ..models.mar_release import load_kl16
from ..models.shapes import CANVAS, CLASS_NAMES
from ..samplers.mar.diffusion import diffusion_schedule
from ..tooling.world import ShapesSample
from .loop import Loss, TrainSettings, run, run_arguments, save_container, training_autocast
from .mar_objective import mar_loss
from .mar_vae import posterior_sample

SHAPES_MAR = MARConfig(encoder_embed_dim=128, encoder_depth=3, encoder_num_heads=4, decoder_embed_dim=128,
                       decoder_depth=3, decoder_num_heads=4, diffloss_d=3, diffloss_w=128, img_size=CANVAS,
                       vae_stride=4, vae_embed_dim=8, class_num=len(CLASS_NAMES), buffer_size=8)
RECIPE = TrainSettings(batch_size=64, lr=1e-3, warmup_steps=200)
TRAIN_TIMESTEPS = 1000
IDENTITY_SCALE = 5.0  # anchor size of the head's eps = x_t start, in LayerNorm units: see start_head_at_identity


def initialise(model: MAR) -> None:
    """The official ``initialize_weights``: N(0, 0.02) embeddings, mask token and position tables, Xavier linear
    layers with zero bias, unit LayerNorms; then the diffusion MLP's own (``SimpleMLPAdaLN.initialize_weights``):
    N(0, 0.02) timestep MLP and zero adaLN modulations, so every residual block starts as the identity; and, where the
    official head starts at zero, a head that starts predicting ``eps = x_t`` (:func:`start_head_at_identity`)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm) and module.elementwise_affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    for table in (model.class_emb.weight, model.fake_latent, model.mask_token, model.encoder_pos_embed_learned,
                  model.decoder_pos_embed_learned, model.diffusion_pos_embed_learned):
        nn.init.normal_(table, std=0.02)
    net = model.diffloss.net
    for layer in (net.time_embed.mlp[0], net.time_embed.mlp[2]):
        nn.init.normal_(layer.weight, std=0.02)
    for modulation in [block.adaLN_modulation[-1] for block in net.res_blocks] + [net.final_layer.adaLN_modulation[-1]]:
        nn.init.zeros_(modulation.weight)
        nn.init.zeros_(modulation.bias)
    start_head_at_identity(net.input_proj, net.final_layer.linear)


@torch.no_grad()
def start_head_at_identity(input_proj: nn.Linear, output: nn.Linear) -> None:
    """Make the diffusion MLP start as ``eps = x_t`` (variance channels 0), exact to ~2e-3 rms.

    Why: the sampler's first step (t = 999, where abar = 2.4e-9) turns the eps error into a mean error about 316 times
    larger, and there ``eps = x_t`` is the right answer to within 5e-5. The official head starts at zero and learns
    this identity over hundreds of thousands of steps; a tiny head in a few thousand steps stays ~3e-2 off (its
    samples blow up to ~1e3), so ours starts there. ``input_proj`` copies the token into the first C channels and
    puts a constant ``IDENTITY_SCALE * sqrt(W)`` in channel C, which dominates the final LayerNorm's statistics so
    that it divides every token by nearly the same number; ``output`` undoes that scale and cancels the mean through
    channel C + 1 (which holds ``-mean / std``): ``out_i = s0 x_i / std(h)`` with ``std(h) = s0 (1 + O(|x|^2 / K^2))``.
    The residual blocks start gated off, so they learn corrections on top of it.

    The anchor also sits in the residual stream that every block's LayerNorm reads, so those see the token divided
    by about ``IDENTITY_SCALE``: 5 keeps the start within the first step's tolerance (per-branch eps errors up to
    ~3e-3 sample cleanly at cfg 4, 3e-2 blow up) while the blocks still see a fifth of the token. At 100 (exact to
    2e-5) they saw a hundredth and never learned to use it: the head stayed a near-linear map of x_t and drew
    ragged shapes in colours picked by the noise.
    """
    channels, width = input_proj.in_features, input_proj.out_features
    anchor = IDENTITY_SCALE * math.sqrt(width)
    scale = math.sqrt(anchor**2 / width - (anchor / width) ** 2)  # std of (x = 0, anchor, 0, ...)
    for layer in (input_proj, output):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    input_proj.weight[:channels, :channels] = torch.eye(channels)
    input_proj.bias[channels] = anchor
    output.weight[:channels, :channels] = scale * torch.eye(channels)
    output.weight[:channels, channels + 1] = -scale


def build_mar(config: MARConfig = SHAPES_MAR) -> nn.ModuleDict:
    model = MAR(config)
    initialise(model)
    return nn.ModuleDict({"mar": model})


def vae_tokens(vae: AutoencoderKL, images: Tensor, patch_size: int, generator: torch.Generator) -> Tensor:
    """Tokens ``(B, L, C)`` of world images ``[B, 3, H, W]`` in [-1, 1]: a posterior sample times 0.2325."""
    with torch.no_grad():
        sample = posterior_sample(*vae.encode_moments(images), generator)
    return patchify(sample * LATENT_SCALE, patch_size)


def c2i_loss(vae: AutoencoderKL) -> Loss:
    """The loop's loss: MAR's objective on the frozen ``vae``'s tokens (bf16 autocast where the CPU has it,
    :func:`.loop.training_autocast`), with plain (math) attention: on a CPU the flash kernel's backward costs a
    quarter of a step on these 72-token sequences, and the math kernel makes a step 1.15-1.4 times faster."""
    schedule = diffusion_schedule(TRAIN_TIMESTEPS, TRAIN_TIMESTEPS)

    def loss(modules: nn.ModuleDict, images: Tensor, samples: list[ShapesSample],
             generator: torch.Generator) -> Tensor:
        model = modules["mar"]
        tokens = vae_tokens(vae, images, model.config.patch_size, generator)
        labels = torch.tensor([sample.class_index for sample in samples])
        with training_autocast(), sdpa_kernel(SDPBackend.MATH):
            return mar_loss(model, tokens, labels, schedule, generator)

    return loss


def save_mar(ema: MAR, raw: MAR, path: Path, provenance: dict) -> Path:
    """The official container at ``path`` and the constructor arguments in ``<stem>.json`` beside it."""
    return save_container(path, {"model": raw, "model_ema": ema}, ema.config, provenance)


def extra_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vae", type=Path, required=True, help="the tiny KL VAE checkpoint (train.mar_vae)")


def main(argv: list[str] | None = None) -> None:
    args = run_arguments(__doc__.split("\n\n")[0], argv, extra_arguments, defaults=RECIPE)
    vae, _ = load_kl16(args.vae)

    def save(ema: nn.ModuleDict, raw: nn.ModuleDict, path: Path, provenance: dict) -> Path:
        target = path if path.suffix else path / "checkpoint.pth"  # snapshots are folders
        return save_mar(ema["mar"], raw["mar"], target, {"script": "train/mar_c2i.py", "vae": args.vae.name,
                                                          **provenance})

    result = run(build_mar, c2i_loss(vae), args, "MAR c2i", save, RECIPE)
    if args.eval:
        from ..tooling.mar_eval import class_accuracy
        from ..tooling.accuracy import format_accuracy

        print(format_accuracy(class_accuracy(result.ema["mar"], vae, samples=args.eval)), flush=True)


if __name__ == "__main__":
    main()
