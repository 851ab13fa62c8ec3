"""PixelFlow parity fixtures: the ``pixelflow`` cases by setting, the model built from a case's checkpoint, and a
case's full cascade replayed from its recorded draws."""

from __future__ import annotations

import torch
from support.fixtures import case_params

from flowar.models.checkpoint import load_checkpoint
from flowar.models.pixelflow import PixelFlowConfig, PixelFlowModel
from flowar.samplers.common import Trace
from flowar.samplers.pixelflow.cascade import sample_cascade
from flowar.samplers.pixelflow.guidance import ClassCondition, GuidedVelocity, TextCondition, stage_guidance
from flowar.samplers.pixelflow.schedule import DEFAULT_GAMMA, cascade_schedule
from flowar.samplers.pixelflow.stage import StageSolver, euler_stage


def fixture_model(case) -> PixelFlowModel:
    config = PixelFlowConfig.from_params(case.config["model_params"])
    model = PixelFlowModel(config).eval()
    model.load_state_dict(load_checkpoint(case.path / case.config["checkpoint"]["file"], "pixelflow"), strict=True)
    return model


def cases_with(setting: str) -> list:
    """The PixelFlow cases whose ``config.json`` has ``setting`` (or the family's skip when there are none)."""
    params = case_params("pixelflow")
    return [param for param in params if param.values[0] is None or setting in param.values[0].config]


def cascade_cases() -> list:
    return cases_with("sampler_args")


class RecordedNoise:
    """Replays a fixture's recorded draws: the initial noise, then the block noise of each stage."""

    def __init__(self, tensors: dict) -> None:
        self.tensors = tensors

    def gaussian(self, shape: tuple[int, ...]) -> torch.Tensor:
        noise = self.tensors["cascade.initial_noise"]
        assert tuple(noise.shape) == shape
        return noise

    def block(self, stage: int, shape: tuple[int, ...]) -> torch.Tensor:
        noise = self.tensors[f"cascade.s{stage}.block_noise"]
        assert tuple(noise.shape) == shape
        return noise


def fixture_condition(tensors: dict, batch: int) -> ClassCondition | TextCondition:
    """The conditioning the official pipeline fed its CFG batch (unconditional rows first)."""
    if "cascade.class_labels_cfg_batch" in tensors:
        labels = tensors["cascade.class_labels_cfg_batch"].long()
        return ClassCondition(labels[batch:], int(labels[0]))
    context, mask = tensors["cascade.encoder_hidden_states_cfg_batch"], tensors["cascade.encoder_attention_mask_cfg_batch"]
    return TextCondition(context[batch:], mask[batch:], context[:batch], mask[:batch])


def run_fixture_cascade(case, solver: StageSolver = euler_stage, trace: Trace | None = None):
    """The case's cascade with its recorded draws, every stage solved by ``solver``: (final latents, schedule,
    steps per stage, guidance per stage)."""
    args, tensors = case.config["sampler_args"], case.tensors
    model = fixture_model(case)
    scheduler = case.config.get("scheduler", {})
    schedule = cascade_schedule(scheduler.get("num_train_timesteps", 1000), scheduler.get("num_stages", 4),
                                scheduler.get("gamma", DEFAULT_GAMMA))
    steps = args["num_inference_steps"]
    steps = steps if isinstance(steps, list) else [steps] * schedule.num_stages
    batch = len(args["prompt"])
    condition = fixture_condition(tensors, batch)
    guidance = stage_guidance(args["guidance_scale"], schedule.num_stages, "official",
                              class_conditional=isinstance(condition, ClassCondition))
    config = model.config
    velocity = GuidedVelocity(model, condition, guidance, patch_size=config.patch_size,
                              head_dim=config.attention_head_dim, use_cfg=args["guidance_scale"] > 0, trace=trace)
    with torch.no_grad():
        final = sample_cascade(velocity, schedule, batch=batch, size=args["width"], steps=steps, shift=args["shift"],
                               noise=RecordedNoise(tensors), solvers=[solver] * schedule.num_stages,
                               device=torch.device("cpu"), channels=config.in_channels, trace=trace)
    return final, schedule, steps, guidance
