"""Accuracy of the built-in tiny MAR on the shapes world, sampled with the pack's own MAR sampler at the sampler
node's defaults (64 iterations, cfg 4 constant, temperature 1, 100 diffusion steps).

Class-to-image: as for PixelFlow (:func:`.accuracy.score`): correct when the analyser finds 1 to 4 objects,
all of the requested shape and colour. Inpainting: world images of the requested class whose left half holds an
object; the left half's tokens are kept and the rest is generated with the image's class; correct by the same
measure (the completed image shows one class, the requested one).

Run from the repository root: ``python -m flowar.tooling.mar_eval builtin/mar/shapes-c2i.pth
--vae builtin/vq/shapes-kl.ckpt --samples 240 [--inpaint 240]``; ``--curve`` takes the snapshots folder of a training
run instead.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..models.kl16 import AutoencoderKL
from ..models.mar import MAR, patchify, unpatchify
from ..models.mar_release import load_kl16, load_mar
from ..models.shapes import CLASS_NAMES
from ..samplers.common import KnownTokens
from ..samplers.mar.defaults import CFG, CFG_SCHEDULE, DIFFUSION_STEPS, NUM_ITER, TEMPERATURE
from ..samplers.mar.diffusion import diffusion_schedule
from ..samplers.mar.noise import SeededMARNoise
from ..samplers.mar.sample import sample_mar
from ..samplers.pixels import pixels_to_image
from .accuracy import Accuracy, format_accuracy, learning_curve, score
from .world import ShapesSample, generate, image_batch

INPAINT_SEED = 5 * 10**11  # world seeds of the inpainting cases start here (far from any training run's)


def sample_images(model: MAR, vae: AutoencoderKL, labels: Tensor, seed: int,
                  known: KnownTokens | None = None) -> tuple[Tensor, Tensor]:
    """IMAGE ``[B, 32, 32, 3]`` in 0..1 and the tokens ``(B, L, C)`` behind it, one seeded MAR run for ``labels``
    ``[B]`` at the node's defaults (``known`` keeps those tokens: inpainting)."""
    config = model.config
    with torch.no_grad():
        tokens = sample_mar(model, labels=labels, batch=len(labels), num_iter=NUM_ITER, cfg=CFG,
                            cfg_schedule=CFG_SCHEDULE, temperature=TEMPERATURE,
                            schedule=diffusion_schedule(DIFFUSION_STEPS), noise=SeededMARNoise(seed),
                            device=torch.device("cpu"), known=known)
        latents = unpatchify(tokens, config.grid, config.vae_embed_dim, config.patch_size)
        return pixels_to_image(vae.decode_tokens(latents)), tokens


def left_half_tokens(model: MAR, vae: AutoencoderKL, images: Tensor) -> KnownTokens:
    """The tokens of IMAGE ``[B, H, W, 3]`` (the posterior mean, as the sampler node encodes) with their left half
    known: the inpainting input."""
    with torch.no_grad():
        tokens = patchify(vae.encode_tokens(images.permute(0, 3, 1, 2) * 2 - 1), model.config.patch_size)
    return KnownTokens(tokens, left_half_known(len(images), model.config.grid))


def left_half_known(batch: int, grid: int) -> Tensor:
    """``(B, grid*grid)`` bool: True in the left half of the token grid."""
    columns = torch.arange(grid).repeat(grid)  # raster order: column of each position
    return (columns < grid // 2).expand(batch, -1)


def inpaint_cases(count: int) -> list[ShapesSample]:
    """``count`` held-out world images, classes in turn, each with an object reaching into the left half."""
    cases, seed = [], INPAINT_SEED
    while len(cases) < count:
        sample = generate(seed)
        wanted = len(cases) % len(CLASS_NAMES)
        if sample.class_index == wanted and any(obj.bbox[0] < sample.image.shape[1] // 2 for obj in sample.objects):
            cases.append(sample)
        seed += 1
    return cases


def class_accuracy(model: MAR, vae: AutoencoderKL, *, samples: int, seed: int = 0, batch: int = 24) -> Accuracy:
    """Sample ``samples`` images, classes in turn, batch ``k`` with seed ``seed + k``, and score them."""
    labels = torch.arange(samples) % len(CLASS_NAMES)
    images = torch.cat([sample_images(model, vae, chunk, seed + k)[0] for k, chunk in enumerate(labels.split(batch))])
    return score(images, labels)


def inpaint_accuracy(model: MAR, vae: AutoencoderKL, *, cases: int, seed: int = 0, batch: int = 24
                     ) -> tuple[Accuracy, int]:
    """Complete ``cases`` left halves (:func:`inpaint_cases`), score them; also how many kept every known token."""
    samples = inpaint_cases(cases)
    labels = torch.tensor([sample.class_index for sample in samples])
    images, unchanged = [], 0
    for k in range(0, cases, batch):
        chunk = image_batch(samples[k:k + batch])
        known = left_half_tokens(model, vae, chunk)
        completed, tokens = sample_images(model, vae, labels[k:k + batch], seed + k // batch, known)
        images.append(completed)
        same = (tokens == known.tokens) | ~known.known[..., None]
        unchanged += int(same.flatten(1).all(dim=1).sum())
    return score(torch.cat(images), labels), unchanged


def snapshot_curve(snapshots: Path, vae: AutoencoderKL, samples: int) -> str:
    """Class accuracy of every snapshot of a training run against its steps and minutes (a markdown table)."""

    def judge(folder: Path) -> tuple[dict, Accuracy]:
        path = folder / "checkpoint.pth"
        return torch.load(path, weights_only=True)["training"], class_accuracy(load_mar(path)[0], vae, samples=samples)

    return learning_curve(snapshots, judge)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="the MAR checkpoint, or with --curve a snapshots folder")
    parser.add_argument("--vae", type=Path, required=True, help="the tiny KL VAE checkpoint")
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--inpaint", type=int, default=0, metavar="N", help="also N inpainting cases")
    parser.add_argument("--curve", action="store_true", help="CHECKPOINT is a snapshots folder: evaluate each")
    args = parser.parse_args(argv)
    vae, _ = load_kl16(args.vae)
    if args.curve:
        print(snapshot_curve(args.checkpoint, vae, args.samples))
        return
    model, _ = load_mar(args.checkpoint)
    print(format_accuracy(class_accuracy(model, vae, samples=args.samples)), flush=True)
    if args.inpaint:
        accuracy, unchanged = inpaint_accuracy(model, vae, cases=args.inpaint)
        print(format_accuracy(accuracy, "inpainting") + f"; known tokens unchanged in {unchanged}/{accuracy.total}")


if __name__ == "__main__":
    main()
