"""MAR sampling shared by ``bench/quality.py`` and ``demo.py``: the built-in tiny MAR and its KL VAE sampled at the
sampler node's defaults (``train/mar_eval.py``: 64 iterations, cfg 4 constant, temperature 1, 100 diffusion steps),
one seed per sample at batch 1, so a manifest's seed reproduces its image in the MAR Sampler node.

Inpainting cases are held-out world images whose left half holds an object of their class (``inpaint_cases``); the
left half of the token grid is kept and the right half generated with the image's class, as the sampler node does
with a mask over the right half. The sampler seed of case ``j`` is ``j`` too.

NFE: the transformer evaluations of a sample (one per iteration, the guided pair counted once); each is followed by
the diffusion MLP's 100 steps over the tokens revealed in that iteration.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from ..models.kl16 import AutoencoderKL
from ..models.mar import MAR
from ..models.mar_release import load_kl16, load_mar
from ..samplers.mar.defaults import NUM_ITER
from .mar_eval import left_half_tokens, sample_images
from .world import ShapesSample, image_batch

from .report import quantise

BUILTIN = Path(__file__).resolve().parents[1] / "builtin"


def add_model_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The model paths, defaulting to the built-in models (shared with ``demo.py``)."""
    parser.add_argument("--mar", type=Path, default=BUILTIN / "mar" / "shapes-c2i.pth",
                        help="MAR checkpoint (its .json beside it)")
    parser.add_argument("--mar-vae", type=Path, default=BUILTIN / "vq" / "shapes-kl.ckpt",
                        help="the KL VAE of that MAR model (its .json beside it)")


def load_models(mar_path: Path, vae_path: Path) -> tuple[MAR, AutoencoderKL]:
    """The MAR model (EMA weights) and its VAE; a clear error when a file is missing."""
    for path, what in ((mar_path, "MAR model"), (vae_path, "MAR VAE")):
        if not path.is_file():
            raise SystemExit(f"no {what} at {path}: train the built-in model (train/) or pass its path")
    return load_mar(mar_path)[0], load_kl16(vae_path)[0]


def sample_class(model: MAR, vae: AutoencoderKL, label: int, seed: int) -> tuple[Tensor, int]:
    """One quantised image ``[32, 32, 3]`` of class ``label`` and the transformer evaluations it took."""
    image, _ = sample_images(model, vae, torch.tensor([label]), seed)
    return quantise(image)[0], NUM_ITER


def sample_inpaint(model: MAR, vae: AutoencoderKL, case: ShapesSample, seed: int) -> tuple[Tensor, int]:
    """``case``'s image with its left half kept and the rest generated for its class (quantised ``[32, 32, 3]``)."""
    known = left_half_tokens(model, vae, image_batch([case]))
    image, _ = sample_images(model, vae, torch.tensor([case.class_index]), seed, known)
    return quantise(image)[0], NUM_ITER

