"""MAR's training objective, as ``models/mar.py`` (``forward``: random order, masking, label drop, encoder/decoder,
``forward_loss``) and ``models/diffloss.py`` / ``diffusion/gaussian_diffusion.py`` (``training_losses``) of LTH14/mar
describe it, written for the built-in tiny model.

Per batch: one count of masked positions (the same for every row, so the encoder keeps equal counts) along a
random order per row, 10% of the class labels replaced by the learned null class. The transformer sees the known
tokens and gives a condition ``z`` per position; the diffusion MLP is trained on the masked positions only, each
repeated ``diffusion_batch_mul`` times with its own timestep of the 1000-step cosine schedule: eps squared error plus
the variational bound (in bits) for its learned variance, with the eps part frozen inside the bound (improved DDPM's
hybrid loss). At t = 0 the bound's decoder term is the Gaussian negative log-likelihood of the clean token (the
official code uses the 8-bit discretised likelihood made for pixels; tokens are continuous).

Changes to the official recipe, for a tiny model trained briefly on 64-token images:

- Masked count uniform over 1..L, where the official draws a mask ratio from N(1, 0.25) truncated to [0.7, 1]. The
  sampler at its defaults (64 iterations over 64 tokens) reveals one token per iteration, so it asks for every count
  from L down to 1 once per image; trained only at >= 70% masked, the tiny model's conditions for the last third of
  the iterations (and for inpainting, half known) are out of distribution, and at cfg 4 its last tokens blew up
  (token std ~1e4).
- A share of the rows (:data:`FIRST_STEP_SHARE`) drawn at t = 999, their eps error weighted
  :data:`FIRST_STEP_WEIGHT` times. The sampler's first step, always at t = 999 where abar = 2.4e-9, turns the eps
  error into a mean error about 316 times larger; the official head learns ``eps = x_t`` there to the needed
  precision over hundreds of thousands of steps, while a tiny head trained uniformly for a few thousand stays ~3e-2
  off and its samples blow up (token std ~1e3 instead of 1). The head also starts there (``train/mar_c2i.py``,
  ``start_head_at_identity``).
- One timestep per masked token (``diffusion_batch_mul`` 1, the official uses 4): on a CPU the head costs as much as
  the transformer, so 4 halves the images seen per minute for a less noisy gradient per image.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..models.mar import MAR
from ..samplers.mar.diffusion import DiffusionSchedule, predicted_gaussian

LABEL_DROP = 0.1
DIFFUSION_BATCH_MUL = 1
FIRST_STEP_SHARE = 0.125  # rows drawn at the last timestep (the sampler's first step)
FIRST_STEP_WEIGHT = 100.0  # their eps squared error counts this many times (1000 spikes the loss)


def masked_count(length: int, generator: torch.Generator) -> int:
    """How many of ``length`` positions one batch masks: uniform over 1..length, as the sampler visits them."""
    return int(torch.randint(1, length + 1, (), generator=generator))


def random_mask(batch: int, length: int, masked: int, generator: torch.Generator) -> Tensor:
    """``(B, L)`` float, 1 at the first ``masked`` positions of a random order per row."""
    orders = torch.argsort(torch.rand(batch, length, generator=generator), dim=1)
    rank = torch.argsort(orders, dim=1)  # position -> its index in the order
    return (rank < masked).float()


def class_rows(model: MAR, labels: Tensor, generator: torch.Generator) -> Tensor:
    """The class embedding per row ``(B, D)``, with :data:`LABEL_DROP` of the rows given the null class."""
    dropped = torch.rand(labels.shape, generator=generator) < LABEL_DROP
    return torch.where(dropped[:, None], model.fake_latent.expand(len(labels), -1), model.class_emb(labels))


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2).square()
                  * torch.exp(-logvar2))


def gaussian_nll(x: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """-log N(x; mean, e^logvar) elementwise, in nats."""
    return 0.5 * (math.log(2 * math.pi) + logvar + (x - mean).square() * torch.exp(-logvar))


def diffusion_loss(model: MAR, target: Tensor, z: Tensor, schedule: DiffusionSchedule,
                   generator: torch.Generator) -> Tensor:
    """Mean over rows of the hybrid loss of the diffusion MLP on clean tokens ``target`` ``(N, C)`` given ``z``
    ``(N, D)``; ``schedule`` is the unrespaced 1000-step one. The MLP runs in float32: sampling needs its eps to
    about 1e-4 at t = 999 (the first step multiplies the error by ~316), far below bfloat16's resolution."""
    rows, channels = target.shape
    t = torch.randint(0, schedule.steps, (rows,), generator=generator)  # (N,)
    first_step = torch.rand(rows, generator=generator) < FIRST_STEP_SHARE
    t[first_step] = schedule.steps - 1
    noise = torch.randn(target.shape, generator=generator)
    abar = schedule.alphas_cumprod[t].float()[:, None]  # (N, 1)
    x_t = abar.sqrt() * target + (1 - abar).sqrt() * noise
    with torch.autocast("cpu", enabled=False):  # the head in float32 even in a bf16 run: see below
        output = model.denoise(x_t, schedule.timestep_map[t], z.float())  # (N, 2C)
    mse = (output[:, :channels] - noise).square().mean(dim=1) * torch.where(first_step, FIRST_STEP_WEIGHT, 1.0)
    frozen = torch.cat([output[:, :channels].detach(), output[:, channels:]], dim=1)
    model_step = predicted_gaussian(frozen, x_t, t, schedule)
    coef1 = schedule.posterior_mean_coef1[t].float()[:, None]
    coef2 = schedule.posterior_mean_coef2[t].float()[:, None]
    true_logvar = schedule.posterior_log_variance_clipped[t].float()[:, None]
    kl = normal_kl(coef1 * target + coef2 * x_t, true_logvar, model_step.mean, model_step.log_variance)
    nll = gaussian_nll(target, model_step.mean, model_step.log_variance)
    bound = torch.where((t == 0)[:, None], nll, kl).mean(dim=1) / math.log(2.0)  # (N,) bits per dimension
    return (mse + bound).mean()


def mar_loss(model: MAR, tokens: Tensor, labels: Tensor, schedule: DiffusionSchedule,
             generator: torch.Generator) -> Tensor:
    """The loss of one batch of clean tokens ``(B, L, C)`` with class ``labels`` ``(B,)``."""
    batch, length, channels = tokens.shape
    rows = class_rows(model, labels, generator)
    mask = random_mask(batch, length, masked_count(length, generator), generator)  # (B, L)
    z = model(tokens, mask, rows)  # (B, L, D)
    chosen = mask.bool()
    target = tokens[chosen].repeat(DIFFUSION_BATCH_MUL, 1)  # (M * mul, C), masked positions only
    conditions = z[chosen].repeat(DIFFUSION_BATCH_MUL, 1)
    return diffusion_loss(model, target, conditions, schedule, generator)
