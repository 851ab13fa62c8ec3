"""Tiny PixelFlow checkpoints in the release layout under a models root, and the PixelFlow Loader and Sampler nodes
driven with small defaults."""

from __future__ import annotations

from pathlib import Path

import torch
from support.checkpoints import write_pixelflow

from flowar.models.pixelflow import PixelFlowConfig, PixelFlowModel
from flowar.nodes.pixelflow import FlowARPixelFlowLoader, FlowARPixelFlowSampler

TINY = {"num_attention_heads": 2, "attention_head_dim": 8, "depth": 1, "patch_size": 2}
C2I = {**TINY, "num_classes": 10}
T2I = {**TINY, "cross_attention_dim": 12}
SAMPLER_DEFAULTS = {"seed": 3, "steps": 2, "cfg": 3.0, "cfg_schedule": "official", "shift": 1.0, "solver": "euler",
                    "size": 16, "batch_size": 2, "class_index": 4}


def tiny_state_dict(params: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = PixelFlowModel(PixelFlowConfig(**params))
    for parameter in model.parameters():  # the official init zeroes the output layers; make every layer count
        torch.nn.init.normal_(parameter, std=0.2)
    return model.state_dict()


def write_tiny(models_dir: Path, name: str, params: dict, *, stages: int = 4) -> str:
    """``pixelflow/<name>/model.pt`` with its ``config.yaml`` (scheduler included); the loader's file name."""
    path = write_pixelflow(models_dir / "pixelflow" / name, tiny_state_dict(params), params)
    config = path.parent / "config.yaml"
    config.write_text(config.read_text() + f"scheduler:\n  num_train_timesteps: 1000\n  num_stages: {stages}\n")
    return f"{name}/model.pt"


def load(name: str, dtype: str = "fp32"):
    return FlowARPixelFlowLoader().load(name, dtype)[0]


def sample(model, **overrides) -> torch.Tensor:
    return FlowARPixelFlowSampler().sample(model, **{**SAMPLER_DEFAULTS, **overrides})[0]
