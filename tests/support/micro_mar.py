"""A micro MAR and its KL VAE (32 px -> 8x8 tokens, as the shipped ones) trained two steps and saved as the
training scripts save them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from flowar.models.kl16 import AutoencoderKL
from flowar.train.loop import TrainSettings, train_modules
from flowar.train.mar_c2i import SHAPES_MAR, build_mar, c2i_loss, save_mar
from flowar.train.mar_vae import SHAPES_KL, save_vae, vae_loss

MICRO_KL = replace(SHAPES_KL, embed_dim=4, ch_mult=(1, 1, 1))  # 32 px -> 8x8 tokens, as the shipped one
MICRO_MAR = replace(SHAPES_MAR, encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=2, decoder_embed_dim=32,
                    decoder_depth=1, decoder_num_heads=2, diffloss_d=1, diffloss_w=32, vae_embed_dim=4, buffer_size=2)
QUICK = TrainSettings(batch_size=8, lr=3e-3, warmup_steps=5, log_every=1)


def micro_vae() -> AutoencoderKL:
    return train_modules(lambda: torch.nn.ModuleDict({"vae": AutoencoderKL(MICRO_KL)}), vae_loss, seed=0, steps=2,
                         settings=QUICK, log=lambda _: None).ema["vae"]


def write_micro_mar(folder: Path) -> tuple[Path, Path]:
    """A micro VAE and MAR trained two steps, saved as the scripts save them: (MAR checkpoint, VAE checkpoint)."""
    vae = micro_vae()
    result = train_modules(lambda: build_mar(MICRO_MAR), c2i_loss(vae), seed=0, steps=2, settings=QUICK,
                           log=lambda _: None)
    vae_path = save_vae(vae, folder / "vq" / "micro-kl.ckpt", {"steps": 2})
    mar_path = save_mar(result.ema["mar"], result.raw["mar"], folder / "mar" / "micro-c2i.pth", {"steps": 2})
    return mar_path, vae_path


def micro_mar_models(folder: Path) -> list[str]:
    """A micro MAR and VAE trained two steps (``write_micro_mar``); their bench/demo options."""
    mar_path, vae_path = write_micro_mar(folder)
    return ["--mar", str(mar_path), "--mar-vae", str(vae_path)]
