"""Accuracy of the built-in PixelFlow models on the shapes world, sampled with the pack's own cascade sampler.

The measures are :mod:`.accuracy`'s (class accuracy, and count accuracy for text-to-image). Sampling uses
the sampler node's defaults: Euler, 10 steps per stage, shift 1,
cfg 4 with the official schedule (class models: the 4-stage ramp where the model has 4 stages, else the ``linear``
ramp, since the official table has no entries for other stage counts; text models: constant), empty negative prompt.

Run from the repository root: ``python -m flowar.tooling.pixelflow_eval builtin/pixelflow/shapes-c2i --samples 240`` (a
text-to-image model also takes ``--text-encoder builtin/text_encoders/shapes-t5``); ``--curve SNAPSHOTS`` evaluates
every snapshot of a training run (accuracy against minutes).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml

from ..models.flan_t5 import T5TextEncoder, load_t5_encoder
from ..models.pixelflow import PixelFlowModel
from ..models.pixelflow_release import load_pixelflow
from ..models.shapes import CAPTIONS, CLASS_NAMES
from ..samplers.pixelflow.cascade import sample_cascade
from ..samplers.pixelflow.defaults import CFG, STEPS_PER_STAGE
from ..samplers.pixelflow.noise import SeededPixelFlowNoise
from ..samplers.pixelflow.stage import StageSolver, euler_stage
from ..samplers.pixelflow.guidance import OFFICIAL_CLASS_STAGE_WEIGHTS, ClassCondition, GuidedVelocity, \
    TextCondition, stage_guidance
from ..samplers.pixelflow.schedule import CascadeSchedule, cascade_schedule
from ..samplers.pixels import pixels_to_image
from .accuracy import Accuracy, format_accuracy, learning_curve, score, score_counts

SIZE = 32
PROMPT_TOKENS = 16  # the tiny T5's tokenizer length (padding beyond it changes nothing: it is masked)


def guidance_schedule(num_stages: int) -> str:
    """``official`` where it is defined (4 stages), else ``linear``."""
    return "official" if num_stages == len(OFFICIAL_CLASS_STAGE_WEIGHTS) else "linear"


def guided_velocity(model: PixelFlowModel, schedule: CascadeSchedule, condition: ClassCondition | TextCondition
                    ) -> GuidedVelocity:
    """The guided velocity at the sampler node's defaults (cfg 4, the class or text guidance schedule)."""
    class_conditional = isinstance(condition, ClassCondition)
    schedule_name = guidance_schedule(schedule.num_stages) if class_conditional else "official"
    guidance = stage_guidance(CFG, schedule.num_stages, schedule_name, class_conditional=class_conditional)
    return GuidedVelocity(model, condition, guidance, patch_size=model.config.patch_size,
                          head_dim=model.config.attention_head_dim, use_cfg=True)


def sample_cascade_images(model: PixelFlowModel, schedule: CascadeSchedule, condition: ClassCondition | TextCondition,
                          seed: int, solvers: Sequence[StageSolver] | None = None) -> torch.Tensor:
    """IMAGE ``[B, 32, 32, 3]`` in 0..1, one seeded cascade run for the batch at the sampler node's defaults
    (``solvers`` replaces the Euler stages, e.g. to count the model calls)."""
    stages = schedule.num_stages
    batch = len(condition.labels) if isinstance(condition, ClassCondition) else len(condition.context)
    with torch.no_grad():
        pixels = sample_cascade(guided_velocity(model, schedule, condition), schedule, batch=batch, size=SIZE,
                                steps=[STEPS_PER_STAGE] * stages, shift=1.0,
                                noise=SeededPixelFlowNoise(seed, schedule.gamma),
                                solvers=list(solvers or [euler_stage] * stages), device=torch.device("cpu"))
    return pixels_to_image(pixels)


def sample_classes(model: PixelFlowModel, schedule: CascadeSchedule, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """IMAGE ``[B, 32, 32, 3]`` for class ``labels`` ``[B]``."""
    return sample_cascade_images(model, schedule, ClassCondition(labels, model.config.num_classes), seed)


def text_condition(encoder: T5TextEncoder, prompts: Sequence[str]) -> TextCondition:
    """The prompts and the empty negative prompt (the official pipeline's), encoded as the Text Encode node does."""
    context, mask = encoder.encode(["", *prompts], max_length=PROMPT_TOKENS)  # (1 + B, L, C), (1 + B, L)
    count = len(prompts)
    return TextCondition(context[1:], mask[1:], context[:1].expand(count, -1, -1), mask[:1].expand(count, -1))


def sample_prompts(model: PixelFlowModel, encoder: T5TextEncoder, schedule: CascadeSchedule, prompts: Sequence[str],
                   seed: int, solvers: Sequence[StageSolver] | None = None) -> torch.Tensor:
    """IMAGE ``[B, 32, 32, 3]`` for ``prompts`` (B of them)."""
    return sample_cascade_images(model, schedule, text_condition(encoder, prompts), seed, solvers)


def class_accuracy(model: PixelFlowModel, schedule: CascadeSchedule, *, samples: int, seed: int = 0,
                   batch: int = 24) -> Accuracy:
    """Sample ``samples`` images, classes in turn (0, 1, ..., 11, 0, ...), batch ``k`` with noise seed
    ``seed + k``, and score them."""
    labels = torch.arange(samples) % len(CLASS_NAMES)
    images = torch.cat([sample_classes(model, schedule, chunk, seed + k)
                        for k, chunk in enumerate(labels.split(batch))])
    return score(images, labels)


def count_accuracy(model: PixelFlowModel, encoder: T5TextEncoder, schedule: CascadeSchedule, *, samples: int,
                   seed: int = 0, batch: int = 24) -> Accuracy:
    """Sample ``samples`` images, captions in turn, batch ``k`` with noise seed ``seed + k``, and score them."""
    prompts = [CAPTIONS[k % len(CAPTIONS)] for k in range(samples)]
    chunks = [prompts[k:k + batch] for k in range(0, samples, batch)]
    images = torch.cat([sample_prompts(model, encoder, schedule, chunk, seed + k) for k, chunk in enumerate(chunks)])
    return score_counts(images, prompts)


def evaluate(folder: Path, text_encoder: Path | None, samples: int, seed: int) -> tuple[Accuracy, str]:
    """The accuracy of the model saved in ``folder`` (class or count accuracy, by its kind) and the measure's name.
    A text-to-image model takes its text encoder from ``text_encoder``, else from ``folder/text_encoder`` (where
    training snapshots keep it)."""
    model, release, _ = load_pixelflow(folder / "model.safetensors")
    schedule = cascade_schedule(release.num_train_timesteps, release.num_stages)
    if release.class_conditional:
        return class_accuracy(model, schedule, samples=samples, seed=seed), "class"
    encoder_folder = text_encoder or folder / "text_encoder"
    if not encoder_folder.is_dir():
        raise SystemExit(f"{folder} is a text-to-image model: give its tiny T5 folder with --text-encoder")
    return count_accuracy(model, load_t5_encoder(encoder_folder), schedule, samples=samples, seed=seed), "count"


def snapshot_curve(snapshots: Path, samples: int, seed: int) -> str:
    """The accuracy of every snapshot of a training run against its steps and minutes (a markdown table)."""

    def judge(folder: Path) -> tuple[dict, Accuracy]:
        provenance = yaml.safe_load((folder / "config.yaml").read_text()).get("training", {})
        return provenance, evaluate(folder, None, samples, seed)[0]

    return learning_curve(snapshots, judge)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder with model.safetensors and config.yaml, or with --curve "
                                                  "the snapshots folder of a training run")
    parser.add_argument("--text-encoder", type=Path, default=None, help="the tiny T5 folder, for text-to-image")
    parser.add_argument("--samples", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--curve", action="store_true", help="FOLDER holds snapshots: evaluate each one")
    args = parser.parse_args(argv)
    if args.curve:
        print(snapshot_curve(args.folder, args.samples, args.seed))
        return
    accuracy, measure = evaluate(args.folder, args.text_encoder, args.samples, args.seed)
    print(format_accuracy(accuracy, measure))


if __name__ == "__main__":
    main()
