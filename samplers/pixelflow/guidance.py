"""Classifier-free guidance for PixelFlow: per-stage scales and the guided velocity of a conditioned model.

Follows ``PixelFlowPipeline`` (ShoufaChen/PixelFlow @ 8805204, ``pixelflow/pipeline_pixelflow.py``): the CFG batch
is ``cat([x, x])`` with the unconditional half first (null class ``num_classes`` for c2i, the empty negative prompt
for t2i), ``v = v_uncond + g_s (v_cond - v_uncond)``, and the batch is formed whenever ``cfg > 0``. The class model's
official scale grows over the stages as ``1 + (cfg - 1) * {0: 0, 1: 1/6, 2: 2/3, 3: 1}[s]``, a table the official
code defines for four stages only; the text model's is constant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ...kernels.rope import pixelflow_rope_table
from ..common import Trace

GUIDANCE_SCHEDULES = ("official", "constant", "linear")
OFFICIAL_CLASS_STAGE_WEIGHTS = (0.0, 1.0 / 6.0, 2.0 / 3.0, 1.0)  # pipeline's scale_dict for stages 0..3


def stage_guidance(cfg: float, num_stages: int, schedule: str, *, class_conditional: bool) -> list[float]:
    """The guidance scale of every stage.

    ``official``: the class model's four-stage ramp, or the text model's constant; ``constant``: ``cfg`` at every
    stage; ``linear``: from 1 (unguided) at the first stage to ``cfg`` at the last.
    """
    if schedule == "official":
        if not class_conditional:
            return [cfg] * num_stages
        if num_stages != len(OFFICIAL_CLASS_STAGE_WEIGHTS):
            raise ValueError(
                f"the official class-to-image guidance schedule is defined for {len(OFFICIAL_CLASS_STAGE_WEIGHTS)} "
                f"stages, this model has {num_stages}: choose the 'constant' or 'linear' schedule"
            )
        return [1.0 + (cfg - 1.0) * weight for weight in OFFICIAL_CLASS_STAGE_WEIGHTS]
    if schedule == "constant":
        return [cfg] * num_stages
    if schedule == "linear":
        if num_stages == 1:
            return [cfg]
        return [1.0 + (cfg - 1.0) * stage / (num_stages - 1) for stage in range(num_stages)]
    raise ValueError(f"unknown guidance schedule {schedule!r}; choose one of {', '.join(GUIDANCE_SCHEDULES)}")


@dataclass(frozen=True)
class ClassCondition:
    """Class labels ``[B]`` (long) and the null label the model was trained with for the unconditional branch."""

    labels: Tensor
    null_label: int

    def cfg_batch(self) -> dict[str, Tensor]:
        return {"class_labels": torch.cat([torch.full_like(self.labels, self.null_label), self.labels])}

    def plain_batch(self) -> dict[str, Tensor]:
        return {"class_labels": self.labels}

    def select(self, rows: Tensor) -> ClassCondition:
        return ClassCondition(self.labels[rows], self.null_label)


@dataclass(frozen=True)
class TextCondition:
    """Encoded prompts ``[B, L, C]`` with masks ``[B, L]`` (1 = token), and the negative prompt's, same length."""

    context: Tensor
    mask: Tensor
    negative_context: Tensor
    negative_mask: Tensor

    def cfg_batch(self) -> dict[str, Tensor]:
        return {"context": torch.cat([self.negative_context, self.context]),
                "context_mask": torch.cat([self.negative_mask, self.mask])}

    def plain_batch(self) -> dict[str, Tensor]:
        return {"context": self.context, "context_mask": self.mask}

    def select(self, rows: Tensor) -> TextCondition:
        return TextCondition(self.context[rows], self.mask[rows], self.negative_context[rows],
                             self.negative_mask[rows])


class GuidedVelocity:
    """``(x, timestep, stage) -> guided velocity`` for a PixelFlow model, conditioning and per-stage scales.

    ``x`` is the float32 state ``[B, C, H, W]``; the timestep is the global one (0..N-1 scale), a scalar or ``[B]``.
    The RoPE table and ``latent_size`` follow from the stage's resolution (token grid ``W / patch``).
    """

    def __init__(
        self,
        model: nn.Module,
        condition: ClassCondition | TextCondition,
        guidance: Sequence[float],
        *,
        patch_size: int,
        head_dim: int,
        use_cfg: bool,
        trace: Trace | None = None,
    ) -> None:
        self.model = model
        self.condition = condition
        self.guidance = list(guidance)
        self.patch_size = patch_size
        self.head_dim = head_dim
        self.use_cfg = use_cfg
        self.trace = trace
        self._inputs = condition.cfg_batch() if use_cfg else condition.plain_batch()
        self._rope: dict[tuple[int, torch.device], Tensor] = {}

    def _rope_table(self, grid: int, device: torch.device) -> Tensor:
        key = (grid, device)
        if key not in self._rope:
            self._rope[key] = pixelflow_rope_table(grid, self.head_dim).to(device)  # (G*G, head_dim, 2)
        return self._rope[key]

    def rows(self, rows: Sequence[int]) -> GuidedVelocity:
        """The same velocity for a batch made of these rows of the conditioning (e.g. N particles of one image,
        as a reward search evaluates them)."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        selected = GuidedVelocity(self.model, self.condition.select(index), self.guidance, patch_size=self.patch_size,
                                  head_dim=self.head_dim, use_cfg=self.use_cfg, trace=self.trace)
        selected._rope = self._rope  # the tables depend on the resolution only
        return selected

    def __call__(self, x: Tensor, timestep: Tensor | float, stage: int) -> Tensor:
        batch, _, height, width = x.shape
        if height != width:
            raise ValueError(f"PixelFlow generates square images, got {height}x{width}")
        grid = width // self.patch_size
        model_input = torch.cat([x, x]) if self.use_cfg else x  # (B', C, H, W), unconditional rows first
        timesteps = torch.as_tensor(timestep, dtype=torch.float32, device=x.device).expand(batch)  # (B,)
        timesteps = torch.cat([timesteps, timesteps]) if self.use_cfg else timesteps  # (B',)
        inputs = {name: value.to(x.device) for name, value in self._inputs.items()}
        out = self.model(model_input, timesteps, latent_size=torch.tensor([grid], dtype=torch.int32, device=x.device),
                         pos_embed=self._rope_table(grid, x.device), **inputs).float()  # (B', C, H, W)
        if self.trace is not None:
            self.trace.nfe += 1
            self.trace.record("timestep", timesteps)
            self.trace.record("model_out", out)
        if not self.use_cfg:
            return out
        uncond, cond = out.chunk(2)
        guided = uncond + self.guidance[stage] * (cond - uncond)  # (B, C, H, W)
        if self.trace is not None:
            self.trace.record("velocity_guided", guided)
        return guided
