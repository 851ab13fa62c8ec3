"""Train the built-in tiny VQ tokenizer (ARPG's) on the shapes world and save it in the official container.

Run from the repository root: ``python -m flowar.train.arpg_vq --out builtin/vq/shapes-vq.pt --steps 2400 --seed 0``
(``--eval N`` afterwards reports the reconstruction error, the codebook usage and how often the analyser reads a
reconstruction exactly as the original, on N held-out world images). The network is our VQ-16 tokenizer
(:mod:`models.vq16`, LlamaGen's) at a small width with two down-sampling levels, so a 32 px image becomes an 8x8
grid of tokens, with a codebook of :data:`SHAPES_VQ` ``.codebook_size`` l2-normalised entries.

Objective, as LlamaGen's ``VQLoss`` and ``VectorQuantizer`` (``tokenizer/tokenizer_image/vq_model.py``,
``vq_loss.py`` of FoundationVision/LlamaGen) without the perceptual and adversarial terms (the world is flat colours
on black): L1 + squared reconstruction error of the image decoded through the straight-through estimator, the
codebook loss ``|sg(z) - e|^2`` and the commitment loss ``0.25 |z - sg(e)|^2``, latents and codes both
l2-normalised. Codes unused for :data:`DEAD_AFTER` steps are moved onto latents of the current batch, so that the
small codebook is used whole (the official run, 16,384 codes over ImageNet, relies on scale instead).

Saved as ``{"model": state_dict, "training": provenance}`` (``vq_ds16_c2i.pt``'s container) beside ``<name>.json``
with the constructor arguments, which the pack's VQ Tokenizer Loader reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.arpg_release import load_vq
from ..models.vq16 import VQConfig, VQModel
from ..samplers.pixels import pixels_to_image
from ..tooling.world import ShapesSample
from .loop import TrainSettings, run, run_arguments, save_container, training_autocast
from .reconstruction import eight_bit, held_out_images, reconstruction_report

# 32 px -> 8x8 tokens; GroupNorm's 32 groups need widths that are multiples of 32.
SHAPES_VQ = VQConfig(codebook_size=512, codebook_embed_dim=8, z_channels=64, ch=32, ch_mult=(1, 2, 2),
                     num_res_blocks=1)
COMMIT_WEIGHT = 0.25  # LlamaGen's commit_loss_beta
DEAD_AFTER = 100  # steps without a use before a code is moved onto a latent of the batch
RECIPE = TrainSettings(batch_size=64, lr=2e-3, warmup_steps=100)


class CodeUsage(nn.Module):
    """Steps since each code was last chosen, and the restarts planned for the next step; training-only state kept
    beside the tokenizer, not saved with it. Restarts wait a step because the codebook may not change between a
    forward and its backward."""

    def __init__(self, codes: int) -> None:
        super().__init__()
        self.register_buffer("idle", torch.zeros(codes, dtype=torch.long))
        self.planned: tuple[Tensor, Tensor] | None = None  # (dead codes (n,), their new vectors (n, C))

    @torch.no_grad()
    def plan_restarts(self, indices: Tensor, latents: Tensor, generator: torch.Generator) -> None:
        """Count a step that chose ``indices``; codes idle for :data:`DEAD_AFTER` steps get random latents of
        this batch ``(B, C, h, w)`` as their new vectors."""
        used = torch.zeros_like(self.idle, dtype=torch.bool)
        used[indices.flatten()] = True
        self.idle.add_(1).masked_fill_(used, 0)
        dead = (self.idle >= DEAD_AFTER).nonzero().flatten()
        if len(dead):
            vectors = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])  # (B*h*w, C)
            chosen = torch.randint(0, len(vectors), (len(dead),), generator=generator)
            self.planned = (dead, vectors[chosen])
            self.idle[dead] = 0

    @torch.no_grad()
    def restart(self, codebook: Tensor) -> None:
        """Move the planned codes of ``codebook`` ``(K, C)`` (the embedding weight) onto their new vectors."""
        if self.planned is not None:
            dead, vectors = self.planned
            codebook[dead] = vectors.to(codebook.dtype)
            self.planned = None


def latent_vectors(vq: VQModel, images: Tensor) -> Tensor:
    """l2-normalised latents ``(B, C, h, w)`` of ``images`` ``[B, 3, 32, 32]`` in [-1, 1], float32."""
    return F.normalize(vq.quant_conv(vq.encoder(images)).float(), dim=1)


def vq_loss(modules: nn.ModuleDict, images: Tensor, _samples: list[ShapesSample],
            generator: torch.Generator) -> Tensor:
    """Reconstruction through the straight-through quantiser, codebook and commitment losses (bf16 autocast,
    :func:`.loop.training_autocast`, for the convolutions, the quantiser and the losses in float32)."""
    vq, usage = modules["vq"], modules["usage"]
    usage.restart(vq.quantize.embedding.weight)
    with training_autocast():
        latents = latent_vectors(vq, images)  # (B, C, 8, 8)
    indices = vq.quantize.indices(latents)  # (B, 8, 8): nearest codes in float32, as at inference
    codes = vq.quantize.entries(indices)  # (B, C, 8, 8), normalised rows
    straight_through = latents + (codes - latents).detach()
    with training_autocast():
        decoded = vq.decode(straight_through)
    reconstruction = (decoded - images).abs().mean() + (decoded - images).square().mean()
    codebook = (codes - latents.detach()).square().mean()
    commitment = (latents - codes.detach()).square().mean()
    usage.plan_restarts(indices, latents.detach(), generator)
    return reconstruction + codebook + COMMIT_WEIGHT * commitment


def reconstruct(vq: VQModel, images: Tensor) -> Tensor:
    """IMAGE ``[B, 32, 32, 3]`` in 0..1 through the tokenizer's codes, quantised to 8 bits as a saved PNG."""
    with torch.no_grad():
        pixels = vq.decode_indices(vq.encode_indices(images.permute(0, 3, 1, 2) * 2 - 1))
    return eight_bit(pixels_to_image(pixels))


@dataclass(frozen=True)
class CodebookUsage:
    codes: int  # codebook size
    used: int  # codes chosen at least once
    perplexity: float  # exp(entropy) of the code frequencies
    context_nats: float  # entropy of a code given its own patch's pixels: what it says about its place and neighbours

    def line(self) -> str:
        return (f"codebook usage: {self.used}/{self.codes} codes ({self.used / self.codes:.0%}), perplexity "
                f"{self.perplexity:.0f}; code entropy given the patch's own pixels {self.context_nats:.2f} nats")


def entropy(counts: Tensor) -> Tensor:
    """Entropy in nats of the distribution proportional to ``counts`` ``(N,)``."""
    share = counts[counts > 0].double() / counts.sum()
    return -(share * share.log()).sum()


def conditional_entropy(codes: Tensor, patches: Tensor) -> float:
    """H(code | patch) in nats over paired samples: ``codes`` ``(N,)`` int64 and ``patches`` ``(N, D)`` pixel
    contents; 0 when equal patches always get the same code."""
    _, content = torch.unique(patches, dim=0, return_inverse=True)  # (N,) id of each pixel content
    _, pair_counts = torch.unique(torch.stack([content, codes], dim=1), dim=0, return_counts=True)
    return float(entropy(pair_counts) - entropy(torch.bincount(content)))


def codebook_usage(vq: VQModel, count: int, batch: int = 250) -> CodebookUsage:
    """How many codes the tokenizer uses on ``count`` held-out world images, how evenly, and how much a code says
    beyond its own patch's pixels (a token model has to predict that part too)."""
    size = vq.config.codebook_size
    codes, patches = [], []
    with torch.no_grad():
        for first in range(0, count, batch):
            images = held_out_images(first, min(batch, count - first))  # (b, 32, 32, 3)
            indices = vq.encode_indices(images.permute(0, 3, 1, 2) * 2 - 1)  # (b, h, w)
            side = images.shape[1] // indices.shape[1]
            blocks = eight_bit(images).unflatten(1, (indices.shape[1], side)).unflatten(3, (indices.shape[2], side))
            patches.append(blocks.permute(0, 1, 3, 2, 4, 5).flatten(3).flatten(0, 2))  # (b*h*w, side*side*3)
            codes.append(indices.flatten())
    codes = torch.cat(codes)  # (N,)
    frequencies = torch.bincount(codes, minlength=size)
    return CodebookUsage(size, int((frequencies > 0).sum()), float(entropy(frequencies).exp()),
                         conditional_entropy(codes, torch.cat(patches)))


def build_vq() -> nn.ModuleDict:
    return nn.ModuleDict({"vq": VQModel(SHAPES_VQ), "usage": CodeUsage(SHAPES_VQ.codebook_size)})


def save_vq(vq: VQModel, path: Path, provenance: dict) -> Path:
    """``{"model": ..., "training": ...}`` at ``path`` and the constructor arguments in ``<stem>.json`` beside it."""
    return save_container(path, {"model": vq}, vq.config, provenance)


def main(argv: list[str] | None = None) -> None:
    args = run_arguments(__doc__.split("\n\n")[0], argv, defaults=RECIPE)

    def save(ema: nn.ModuleDict, _raw: nn.ModuleDict, path: Path, provenance: dict) -> Path:
        target = path if path.suffix else path / "model.pt"  # snapshots are folders
        return save_vq(ema["vq"], target, {"script": "train/arpg_vq.py", **provenance})

    run(build_vq, vq_loss, args, "tiny VQ tokenizer", save, RECIPE)
    if args.eval:
        vq, _ = load_vq(args.out)
        print(reconstruction_report(lambda images: reconstruct(vq, images), args.eval).line(), flush=True)
        print(codebook_usage(vq, args.eval).line(), flush=True)


if __name__ == "__main__":
    main()
