"""Train the built-in tiny class-conditional ARPG on the tiny VQ tokenizer's codes of the shapes world, and save it in
the official container.

Run from the repository root, after the tokenizer (:mod:`.arpg_vq`): ``python -m flowar.train.arpg_c2i --vq
builtin/vq/shapes-vq.pt --out builtin/arpg/shapes-c2i.pt --steps 3000 --seed 0`` (``--eval N`` samples N images
afterwards at the built-in's default settings and prints the class accuracy; ``--snapshots DIR`` keeps the weights
every ``--every`` steps). The network is our ARPG (:mod:`models.arpg`: content layers, shared K/V, guided query
layers) at a small width on the tokenizer's 8x8 grid; the objective is :mod:`.arpg_objective`; seeding and the
loop: :mod:`.loop`. Weights start as the official ``initialize_weights`` sets them: N(0, 0.02) linear layers and
embeddings, a zero output head.

Saved in the container of the official ``arpg_*.pt``: ``{"state_dict": EMA weights, "training": provenance}``,
beside ``<name>.json`` with the official ``ModelArgs`` (the head count and grid the weights cannot tell).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..models.arpg import ARPGConfig, ARPGTransformer
from ..models.arpg_release import load_vq
from ..models.shapes import CLASS_NAMES
from ..models.vq16 import VQModel
from ..tooling.world import ShapesSample
from .arpg_objective import arpg_loss
from .arpg_vq import SHAPES_VQ
from .loop import Loss, TrainSettings, run, run_arguments, save_container, training_autocast

SHAPES_ARPG = ARPGConfig(dim=192, n_layer=8, n_head=6, vocab_size=SHAPES_VQ.codebook_size,
                         num_classes=len(CLASS_NAMES), block_size=64, multiple_of=32)
RECIPE = TrainSettings(batch_size=64, lr=1e-3, warmup_steps=200)
INITIALIZER_RANGE = 0.02  # official ModelArgs.initializer_range


def initialise(model: ARPGTransformer) -> None:
    """The official ``initialize_weights``: N(0, 0.02) linear layers and embeddings, then a zero output head."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=INITIALIZER_RANGE)
    nn.init.zeros_(model.head.weight)


def build_arpg(config: ARPGConfig = SHAPES_ARPG) -> nn.ModuleDict:
    model = ARPGTransformer(config)
    initialise(model)
    return nn.ModuleDict({"arpg": model})


def grid_codes(vq: VQModel, images: Tensor) -> Tensor:
    """Codes ``(B, L)`` in raster order of world images ``[B, 3, H, W]`` in [-1, 1], as the tokenizer encodes them
    at inference (float32)."""
    with torch.no_grad():
        return vq.encode_indices(images).flatten(1)


def c2i_loss(vq: VQModel) -> Loss:
    """The loop's loss: ARPG's objective on the frozen ``vq``'s codes, the transformer in bf16 autocast
    (:func:`.loop.training_autocast`) with plain (math) attention, which on a CPU trains these short sequences faster
    than the flash kernel."""

    def loss(modules: nn.ModuleDict, images: Tensor, samples: list[ShapesSample],
             generator: torch.Generator) -> Tensor:
        labels = torch.tensor([sample.class_index for sample in samples])
        codes = grid_codes(vq, images)
        with training_autocast(), sdpa_kernel(SDPBackend.MATH):
            return arpg_loss(modules["arpg"], codes, labels, generator)

    return loss


def check_pairing(config: ARPGConfig, vq: VQModel) -> None:
    """The tokenizer must give the grid and the vocabulary the transformer is built for."""
    side = 32 // vq.config.downsample  # the world's 32 px canvas
    if vq.config.codebook_size != config.vocab_size or side != config.grid_size:
        raise ValueError(f"the tokenizer gives a {side}x{side} grid of {vq.config.codebook_size} codes, the ARPG "
                         f"recipe expects {config.grid_size}x{config.grid_size} of {config.vocab_size}")


def save_arpg(model: ARPGTransformer, path: Path, provenance: dict) -> Path:
    """The official container at ``path`` and the ``ModelArgs`` in ``<stem>.json`` beside it."""
    return save_container(path, {"state_dict": model}, model.config, provenance)


def extra_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vq", type=Path, required=True, help="the tiny VQ tokenizer checkpoint (train.arpg_vq)")


def main(argv: list[str] | None = None) -> None:
    args = run_arguments(__doc__.split("\n\n")[0], argv, extra_arguments, defaults=RECIPE)
    vq, _ = load_vq(args.vq)
    check_pairing(SHAPES_ARPG, vq)

    def save(ema: nn.ModuleDict, _raw: nn.ModuleDict, path: Path, provenance: dict) -> Path:
        target = path if path.suffix else path / "model.pt"  # snapshots are folders
        return save_arpg(ema["arpg"], target, {"script": "train/arpg_c2i.py", "vq": args.vq.name, **provenance})

    result = run(build_arpg, c2i_loss(vq), args, "ARPG c2i", save, RECIPE)
    if args.eval:
        from ..tooling.arpg_eval import class_accuracy
        from ..tooling.accuracy import format_accuracy

        print(format_accuracy(class_accuracy(result.ema["arpg"], vq, samples=args.eval)), flush=True)


if __name__ == "__main__":
    main()
