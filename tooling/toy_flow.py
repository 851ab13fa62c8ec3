"""An exact Gaussian-mixture flow with a closed-form velocity, and a squared-distance reward: the toy world of the
flow-search fixtures, used by their tests and by ``bench/flow_search_toy.py``.

The model follows each fixture case's ``CASES.md``: data ``x0`` (flattened to ``d`` values) is a mixture of isotropic
Gaussians (``means [K, d]``, ``logits [K]``, ``std``); on the linear path ``x = (1 - t) x0 + t eps`` its exact
velocity ``E[eps - x0 | x]`` is computed in float64 and returned in float32, as the official harness did. As a
ComfyUI ``CONST`` model it denoises with ``D = x - sigma u`` in float32.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class GaussianMixtureFlow:
    means: Tensor  # (K, d)
    logits: Tensor  # (K,)
    std: float

    def velocity(self, x: Tensor, t: Tensor) -> Tensor:
        """Exact ``u_t(x)`` for states ``[N, ...]`` at times ``[N]`` (float64 inside, float32 out)."""
        flat = x.reshape(x.shape[0], -1).double()  # (N, d)
        t64 = t.double().reshape(-1, 1, 1)  # (N, 1, 1)
        a = 1 - t64
        variance = a**2 * self.std**2 + t64**2
        means = self.means.double()[None]  # (1, K, d)
        diff = flat[:, None, :] - a * means  # (N, K, d)
        dim = flat.shape[1]
        log_w = (self.logits.double()[None] - (diff**2).sum(-1) / (2 * variance[..., 0])
                 - dim / 2 * torch.log(variance[..., 0]))  # (N, K)
        weights = torch.softmax(log_w, dim=1)[..., None]  # (N, K, 1)
        per_component = (t64 / variance) * diff - (means + (a * self.std**2 / variance) * diff)
        return (weights * per_component).sum(1).reshape(x.shape).float()

    def __call__(self, x: Tensor, sigma: Tensor) -> Tensor:
        """ComfyUI-style denoiser: ``D = x - sigma * velocity``."""
        return x - sigma.reshape(-1, *([1] * (x.dim() - 1))) * self.velocity(x, sigma)

    def sample(self, count: int, generator: torch.Generator, shape: Sequence[int]) -> Tensor:
        """Exact samples ``[count, *shape]`` of the mixture (for checking that samplers keep its distribution)."""
        component = torch.multinomial(torch.softmax(self.logits.double(), 0), count, True, generator=generator)
        noise = torch.randn(count, self.means.shape[1], generator=generator, dtype=torch.float64)
        return (self.means.double()[component] + self.std * noise).float().reshape(count, *shape)


def squared_distance_reward(target: Tensor, scale: float) -> Callable[[Tensor], Tensor]:
    """``-scale * mean((x0 - target)^2)`` per sample, float64 inside, float32 out (the fixtures' toy reward)."""
    def reward(x0: Tensor) -> Tensor:
        diff = x0.double() - target.double().to(x0.device)
        return (-scale * diff.reshape(x0.shape[0], -1).pow(2).mean(1)).float().cpu()
    return reward
