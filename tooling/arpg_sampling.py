"""ARPG sampling shared by ``bench/quality.py`` and ``demo.py``: the built-in tiny ARPG and its VQ tokenizer sampled
with the settings of ``train/arpg_eval.py`` (the built-in's own: 16 parallel steps, cfg 2, temperature 0.7, and the
raster baseline), one seed per sample at batch 1, so a manifest's seed reproduces its image in the ARPG Sampler
node.

Editing cases are held-out world images with an object of their class in the centre (``edit_cases``): inpainting
regenerates the centre 4x4 tokens, outpainting the border ring one token wide around the centre 6x6, as the sampler
node does with the Region Mask's centre 0.5 and border 0.25. The sampler seed of case ``j`` is ``j`` too.

NFE: the transformer evaluations of a sample (one per decoding step, the guided pair counted once).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor

from ..models.arpg import ARPGTransformer
from ..models.arpg_release import load_arpg, load_vq
from ..models.vq16 import VQModel
from ..samplers.arpg.decode import DecodeSettings
from .arpg_eval import PARALLEL, RASTER, edit_input, sample_images
from .world import ShapesSample, image_batch

from .report import quantise

BUILTIN = Path(__file__).resolve().parents[1] / "builtin"
METHODS = {"parallel": PARALLEL, "raster": RASTER}


def add_model_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The model paths, defaulting to the built-in models (shared with ``demo.py``)."""
    parser.add_argument("--arpg", type=Path, default=BUILTIN / "arpg" / "shapes-c2i.pt",
                        help="ARPG checkpoint (its .json beside it)")
    parser.add_argument("--arpg-vq", type=Path, default=BUILTIN / "vq" / "shapes-vq.pt",
                        help="the VQ tokenizer of that ARPG model (its .json beside it)")


def load_models(arpg_path: Path, vq_path: Path) -> tuple[ARPGTransformer, VQModel]:
    """The ARPG model and its tokenizer; a clear error when a file is missing."""
    for path, what in ((arpg_path, "ARPG model"), (vq_path, "ARPG VQ tokenizer")):
        if not path.is_file():
            raise SystemExit(f"no {what} at {path}: train the built-in model (train/) or pass its path")
    return load_arpg(arpg_path)[0], load_vq(vq_path)[0]


def steps_taken(settings: DecodeSettings, tokens: int) -> int:
    """Transformer evaluations of one sample decoding ``tokens`` positions."""
    return tokens if settings.schedule == "raster" else min(settings.steps, tokens)


def sample_class(model: ARPGTransformer, vq: VQModel, label: int, seed: int, method: str = "parallel"
                 ) -> tuple[Tensor, int]:
    """One quantised image ``[32, 32, 3]`` of class ``label`` and the transformer evaluations it took."""
    settings = METHODS[method]
    image, _ = sample_images(model, vq, torch.tensor([label]), seed, settings)
    return quantise(image)[0], steps_taken(settings, model.config.block_size)


def sample_edit(model: ARPGTransformer, vq: VQModel, case: ShapesSample, edit: str, seed: int) -> tuple[Tensor, int]:
    """``case``'s image with the ``edit``'s known tokens kept and the rest generated for its class (parallel
    decoding; quantised ``[32, 32, 3]``)."""
    known = edit_input(vq, image_batch([case]), edit)
    image, _ = sample_images(model, vq, torch.tensor([case.class_index]), seed, PARALLEL, known)
    return quantise(image)[0], steps_taken(PARALLEL, int((~known.known).sum()))
