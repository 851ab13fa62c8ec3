"""Train the built-in class-to-image PixelFlow on the shapes world and save it in the official release layout.

Run from the repository root: ``python -m flowar.train.pixelflow_c2i --out builtin/pixelflow/shapes-c2i --steps 14000
--seed 0`` (``--minutes`` bounds the run by time instead or as well; ``--eval N`` samples N images afterwards and
prints the class accuracy; ``--snapshots DIR`` keeps the EMA weights every ``--every`` steps). Seeding and the loop:
:mod:`.loop`.

The saved weights are the EMA ones, as ``model.safetensors`` (flat state dict, official parameter names) beside a
``config.yaml`` with ``model.params``, ``scheduler.num_train_timesteps`` / ``num_stages`` and ``data.resolution``,
which the pack's PixelFlow loader reads like a release.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..models.pixelflow import PixelFlowConfig, PixelFlowModel
from ..models.shapes import CANVAS, CLASS_NAMES
from ..samplers.pixelflow.schedule import cascade_schedule
from .loop import run_arguments
from .pixelflow_objective import initialise
from .pixelflow_training import NUM_TRAIN_TIMESTEPS, PixelFlowTask, run, save_release

# 4 stages (4 -> 8 -> 16 -> 32 px) so the sampler's default "official" class-guidance ramp applies; patch 2.
SHAPES_C2I = PixelFlowConfig(num_attention_heads=4, attention_head_dim=24, depth=6, patch_size=2,
                             num_classes=len(CLASS_NAMES), attention_bias=True)
SHAPES_C2I_STAGES = 4


def c2i_task(config: PixelFlowConfig = SHAPES_C2I) -> PixelFlowTask:
    """Class-to-image: each world image is labelled with its class; the null class drives guidance."""

    def build() -> nn.ModuleDict:
        model = PixelFlowModel(config)
        initialise(model)
        return nn.ModuleDict({"pixelflow": model})

    return PixelFlowTask(build=build, label=lambda sample: sample.class_index, null_label=config.num_classes,
                         condition=lambda _, labels: {"class_labels": labels})


def main(argv: list[str] | None = None) -> None:
    args = run_arguments(__doc__.split("\n\n")[0], argv)
    schedule = cascade_schedule(NUM_TRAIN_TIMESTEPS, SHAPES_C2I_STAGES)

    def save(ema: nn.ModuleDict, _raw: nn.ModuleDict, folder: Path, provenance: dict) -> Path:
        return save_release(ema["pixelflow"], schedule, folder, resolution=CANVAS,
                            provenance={"script": "train/pixelflow_c2i.py", **provenance})

    result = run(c2i_task(), schedule, args, "PixelFlow c2i", save)
    if args.eval:
        from ..tooling.pixelflow_eval import class_accuracy
        from ..tooling.accuracy import format_accuracy

        print(format_accuracy(class_accuracy(result.ema["pixelflow"], schedule, samples=args.eval)), flush=True)


if __name__ == "__main__":
    main()
