"""PixelFlow's training objective, as ``pixelflow/data_in1k.py`` ``collate_fn`` of ShoufaChen/PixelFlow builds it,
batched per stage instead of packed into one varlen sequence (the same loss without flash-attention's packing).

Per sample: a stage (the batch is split evenly over the stages in random order), an index ``i`` into that stage's
``num_train_timesteps`` table (the model's global timestep) and its local time ``t = i / N``; one noise ``n`` at the
stage's resolution. The endpoints are the cascade's training states at local time 1 and 0
(:func:`samplers.pixelflow.cascade.noised_entry`), ``x_t = t end + (1 - t) start`` and the target velocity is
``end - start``.
The loss is the mean squared error over every pixel of the batch, as the packed official batch weighs it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..kernels.rope import pixelflow_rope_table
from ..models.pixelflow import PixelFlowModel
from ..samplers.pixelflow.cascade import noised_entry
from ..samplers.pixelflow.schedule import CascadeSchedule

LABEL_DROPOUT = 0.1  # share of labels replaced by the null class, so the model learns the CFG branch


@dataclass(frozen=True)
class StageBatch:
    """The training inputs and target of the samples drawn for one stage."""

    stage: int
    x_t: Tensor  # (b, C, r, r) state at local time t, r = the stage's resolution
    timesteps: Tensor  # (b,) float32 global timesteps (0..N-1 scale)
    local_t: Tensor  # (b,) float64 local times i / N
    target: Tensor  # (b, C, r, r) velocity end - start
    labels: Tensor  # (b,) long class (or caption) indices, some replaced by the null one


def stage_batch(images: Tensor, labels: Tensor, schedule: CascadeSchedule, stage: int,
                generator: torch.Generator) -> StageBatch:
    """Draw timesteps and noise for clean ``images`` ``[b, C, size, size]`` in [-1, 1] trained at ``stage``
    (from ``generator``: the table indices, then the noise)."""
    n = schedule.num_train_timesteps
    index = torch.randint(0, n, (images.shape[0],), generator=generator)  # (b,)
    local_t = index.double() / n  # the official t_window: linspace(0, 1, N + 1)[:-1]
    resolution = images.shape[-1] // 2 ** (schedule.num_stages - 1 - stage)
    noise = torch.randn(images.shape[0], images.shape[1], resolution, resolution, generator=generator)
    end = noised_entry(images, schedule, stage, 1.0, noise)  # (b, C, r, r)
    start = noised_entry(images, schedule, stage, 0.0, noise)
    t = local_t.float()[:, None, None, None]
    return StageBatch(stage, t * end + (1 - t) * start, schedule.stage_timesteps(stage)[index].float(), local_t,
                      end - start, labels)


def drop_labels(labels: Tensor, null_label: int, generator: torch.Generator) -> Tensor:
    """``labels`` with :data:`LABEL_DROPOUT` of them, drawn at random, set to ``null_label``."""
    dropped = torch.rand(labels.shape, generator=generator) < LABEL_DROPOUT
    return torch.where(dropped, torch.full_like(labels, null_label), labels)


def training_batches(images: Tensor, labels: Tensor, schedule: CascadeSchedule, null_label: int,
                     generator: torch.Generator) -> list[StageBatch]:
    """Split a batch evenly over the stages in random order (as ``collate_fn`` does) and draw each stage's inputs."""
    labels = drop_labels(labels, null_label, generator)
    stages = torch.randperm(images.shape[0], generator=generator) % schedule.num_stages  # (B,)
    return [stage_batch(images[stages == s], labels[stages == s], schedule, s, generator)
            for s in range(schedule.num_stages) if (stages == s).any()]


def flow_loss(model: PixelFlowModel, batches: list[StageBatch],
              condition: Callable[[Tensor], dict[str, Tensor]] | None = None) -> Tensor:
    """Mean squared velocity error over every pixel of all stage batches (one forward per stage).

    ``condition`` maps a stage batch's labels to the model's conditioning keywords (text-to-image: the encoded
    captions); by default the labels are class labels."""
    condition = condition or (lambda labels: {"class_labels": labels})
    config, squared, count = model.config, torch.zeros(()), 0
    for batch in batches:
        grid = batch.x_t.shape[-1] // config.patch_size
        predicted = model(batch.x_t, batch.timesteps, latent_size=torch.tensor([grid], dtype=torch.int32),
                          pos_embed=pixelflow_rope_table(grid, config.attention_head_dim),
                          **condition(batch.labels))  # (b, C, r, r)
        squared = squared + F.mse_loss(predicted, batch.target, reduction="sum")
        count += batch.target.numel()
    return squared / count


def initialise(model: PixelFlowModel) -> None:
    """DiT's initialisation, which PixelFlow's ``initialize_weights`` follows: Xavier linear layers, N(0, 0.02)
    embeddings, and zero adaLN modulation and output projection, so every block starts as the identity and the
    first prediction is zero (the loaded modules carry no init of their own: run-time code only loads weights)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    weight = model.patch_embed.proj.weight
    nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
    nn.init.zeros_(model.patch_embed.proj.bias)
    for embedder in (model.timestep_embedder, model.latent_size_embedder):
        nn.init.normal_(embedder.linear_1.weight, std=0.02)
        nn.init.normal_(embedder.linear_2.weight, std=0.02)
    if model.config.num_classes > 0:
        nn.init.normal_(model.class_embedder.embedding_table.weight, std=0.02)
    for block in model.transformer_blocks:
        nn.init.zeros_(block.norm1.linear.weight)
        nn.init.zeros_(block.norm1.linear.bias)
    for layer in (model.proj_out_1, model.proj_out_2):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
