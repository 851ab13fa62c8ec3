"""The flow-search fixtures' toy world: the case's exact Gaussian-mixture flow (``flowar.tooling.toy_flow``), its
reward, and replayed draws."""

from __future__ import annotations

import re

import torch
from torch import Tensor

from flowar.tooling.toy_flow import GaussianMixtureFlow, squared_distance_reward

DRAW = re.compile(r"^(?:call|iter)(\d+)\.randn(\d+)\.(\w+)$")
ROLES = {"initial": "init_latent", "step": "sde_noise"}  # protocol method -> the harness's role name


def toy_model(tensors: dict[str, Tensor], config: dict) -> GaussianMixtureFlow:
    """The case's toy model from its ``toy.*`` tensors and ``config['toy']``."""
    return GaussianMixtureFlow(tensors["toy.means"], tensors["toy.logits"], float(config["toy"]["std"]))


def toy_reward(tensors: dict[str, Tensor], config: dict):
    return squared_distance_reward(tensors["toy.reward_target"], float(config["toy"]["reward_scale"]))


class ReplayNoise:
    """Hands out a case's recorded ``randn`` draws in recorded order, checking each request's role and shape."""

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        found = [(int(m[1]), int(m[2]), m[3], value) for key, value in tensors.items() if (m := DRAW.match(key))]
        self.draws = [(role, value) for _, _, role, value in sorted(found, key=lambda item: item[:2])]
        self.used = 0

    def _next(self, method: str, shape: tuple[int, ...]) -> Tensor:
        assert self.used < len(self.draws), f"{method} draw {self.used} requested, only {len(self.draws)} recorded"
        role, value = self.draws[self.used]
        assert role == ROLES[method], f"draw {self.used}: asked for {ROLES[method]}, recorded {role}"
        assert tuple(value.shape) == tuple(shape), f"draw {self.used} ({role}): shape {shape} vs {tuple(value.shape)}"
        self.used += 1
        return value.clone()

    def initial(self, shape: tuple[int, ...]) -> Tensor:
        return self._next("initial", shape)

    def step(self, shape: tuple[int, ...]) -> Tensor:
        return self._next("step", shape)

    def renoise(self, shape: tuple[int, ...]) -> Tensor:
        raise AssertionError("the fixtures record no re-noising draws")

    def ancestors(self, weights: Tensor, count: int) -> Tensor:
        raise AssertionError("the fixtures record no resampling draws")

