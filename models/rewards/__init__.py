"""Reward models for inference-time search over flow models: images ``[B, H, W, C]`` in 0..1 and a prompt in,
scores ``[B]`` out (float32, CPU, higher is better).

Each module wraps one reward of the RBF paper (Kim et al., "Inference-Time Scaling for Flow Models via Stochastic
Generation and Rollover Budget Forcing", arXiv 2503.19385; official code ``KAIST-Visual-AI-Group/
Flow-Inference-Time-Scaling``, ``rbf/corrector/reward_model/``) behind :class:`RewardModel`. The node layer wraps
``modules`` for ComfyUI's memory manager and brings them to their device before calling :meth:`RewardModel.score`,
which runs where the weights are.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, nn


@runtime_checkable
class RewardModel(Protocol):
    """What the search samplers and the reward nodes need from a reward."""

    name: str  # e.g. "VQAScore[clip-flant5-xxl]", for progress text and traces
    modules: tuple[nn.Module, ...]  # the weights to wrap and load before scoring

    def check_prompt(self, prompt: str) -> None:
        """Raise ``ValueError`` naming the expected form when ``prompt`` cannot be scored against."""

    def score(self, images: Tensor, prompt: str) -> Tensor:
        """Scores ``[B]`` (float32, CPU, higher is better) of images ``[B, H, W, C]`` in 0..1 for ``prompt``."""


def check_images(images: Tensor) -> Tensor:
    """IMAGE ``[B, H, W, C]`` (C = 3, or 4 with alpha dropped) in 0..1 -> ``[B, 3, H, W]`` float32, clamped.

    Non-finite pixels are refused: a NaN image would give a NaN score that silently wins or loses every ranking.
    """
    if images.dim() != 4 or images.shape[-1] not in (3, 4) or images.shape[0] == 0:
        raise ValueError(f"rewards score IMAGE batches [B, H, W, 3]; got a tensor of shape {tuple(images.shape)}")
    pixels = images[..., :3].permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    if not torch.isfinite(pixels).all():
        raise ValueError("the images to score contain NaN or infinite values")
    return pixels.clamp(0, 1)


def require_text(prompt: str, reward: str) -> str:
    """``prompt`` stripped, or a ``ValueError`` saying that ``reward`` needs one."""
    text = prompt.strip()
    if not text:
        raise ValueError(f"{reward}: the prompt is empty; it scores how well an image matches a text, so give one")
    return text


def module_device(module: nn.Module) -> torch.device:
    """Where ``module``'s weights are now (ComfyUI's model management may have moved them)."""
    return next(module.parameters()).device


def module_dtype(module: nn.Module) -> torch.dtype:
    """The floating dtype of ``module``'s weights, which its inputs must match."""
    return next(p.dtype for p in module.parameters() if p.is_floating_point())
