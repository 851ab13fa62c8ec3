"""A micro ARPG and its VQ tokenizer (32 px -> 8x8 tokens) trained two steps and saved as the training scripts save
them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from flowar.models.vq16 import VQModel
from flowar.train.arpg_c2i import SHAPES_ARPG, build_arpg, c2i_loss, save_arpg
from flowar.train.arpg_vq import SHAPES_VQ, CodeUsage, save_vq, vq_loss
from flowar.train.loop import TrainSettings, train_modules

MICRO_VQ = replace(SHAPES_VQ, codebook_size=32, z_channels=32, ch_mult=(1, 1, 1))  # 32 px -> 8x8 tokens
MICRO_ARPG = replace(SHAPES_ARPG, dim=32, n_layer=2, n_head=2, vocab_size=32)
QUICK = TrainSettings(batch_size=8, lr=3e-3, warmup_steps=5, log_every=1)


def micro_vq_modules() -> torch.nn.ModuleDict:
    return torch.nn.ModuleDict({"vq": VQModel(MICRO_VQ), "usage": CodeUsage(MICRO_VQ.codebook_size)})


def micro_vq() -> VQModel:
    return train_modules(micro_vq_modules, vq_loss, seed=0, steps=2, settings=QUICK, log=lambda _: None).ema["vq"]


def write_micro_arpg(folder: Path) -> tuple[Path, Path]:
    """A micro tokenizer and ARPG trained two steps, saved as the scripts save them: (ARPG, tokenizer)."""
    vq = micro_vq()
    result = train_modules(lambda: build_arpg(MICRO_ARPG), c2i_loss(vq), seed=0, steps=2, settings=QUICK,
                           log=lambda _: None)
    vq_path = save_vq(vq, folder / "vq" / "micro-vq.pt", {"steps": 2})
    return save_arpg(result.ema["arpg"], folder / "arpg" / "micro-c2i.pt", {"steps": 2}), vq_path


def micro_arpg_models(folder: Path) -> list[str]:
    """A micro ARPG and VQ tokenizer trained two steps (``write_micro_arpg``); their bench/demo options."""
    arpg_path, vq_path = write_micro_arpg(folder)
    return ["--arpg", str(arpg_path), "--arpg-vq", str(vq_path)]
