"""PixelFlow nodes: checkpoint loader, Flan-T5 loader + text encode, and the cascade sampler (IMAGE out).

Glue only: files are found through the runtime bridge, models wrapped for ComfyUI's memory manager, and the
sampling itself is :func:`samplers.pixelflow.cascade.sample_cascade`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.flan_t5 import T5TextEncoder, load_t5_encoder
from ..models.pixelflow_release import PixelFlowRelease, load_pixelflow
from ..samplers.flow_search.noise import SeededFlowSearchNoise
from ..samplers.flow_search.settings import METHODS, SearchSettings, search_plan
from ..samplers.pixelflow import defaults
from ..samplers.pixelflow.cascade import check_size, sample_cascade
from ..samplers.pixelflow.noise import SeededPixelFlowNoise
from ..samplers.pixelflow.search import search_stage_solver
from ..samplers.pixelflow.stage import STAGE_SOLVERS
from ..samplers.pixelflow.guidance import GUIDANCE_SCHEDULES, ClassCondition, GuidedVelocity, TextCondition, \
    stage_guidance
from ..samplers.pixelflow.schedule import cascade_schedule
from ..samplers.pixels import image_to_pixels, pixels_to_image
from .common import plan_load, seed_input
from .runtime import folders
from .runtime.devices import DTYPE_CHOICES, intermediate_device
from .runtime.patcher import load_models, wrap_module
from .runtime.progress import Progress

CATEGORY = "FlowAR/PixelFlow"
T5_FOLDER = "text_encoders"
T5_WHERE_TO_GET = ("Hugging Face google/flan-t5-xl (the whole folder with config.json, or an encoder-only "
                   ".safetensors) into ComfyUI/models/text_encoders")
T5_DTYPES = ("fp32", "bf16")


@dataclass(frozen=True)
class PixelFlowHandle:
    """The ``PIXELFLOW_MODEL`` payload: the wrapped transformer and the release settings it was trained with."""

    patcher: object
    release: PixelFlowRelease
    source: str  # where the config came from


@dataclass(frozen=True)
class FlanT5Handle:
    """The ``FLAN_T5`` payload: the wrapped encoder and its tokenizer."""

    patcher: object
    encoder: T5TextEncoder


class FlowARPixelFlowLoader:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = (
        "Load a PixelFlow checkpoint (model.pt of ShoufaChen/PixelFlow-Class2Image or -Text2Image, with the "
        "config.yaml beside it) from models/pixelflow, or one of the pack's built-in models."
    )
    RETURN_TYPES = ("PIXELFLOW_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The PixelFlow transformer with its cascade settings (stages, timesteps, training size).",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "ckpt_name": (folders.list_files("pixelflow"), {
                    "tooltip": "model.pt in models/pixelflow (keep the release's config.yaml in the same folder)."}),
                "dtype": (list(DTYPE_CHOICES), {
                    "default": "auto",
                    "tooltip": "Weight dtype. auto follows ComfyUI (bf16/fp16 on GPU, fp32 on CPU); fp32 is exact."}),
            }
        }

    def load(self, ckpt_name: str, dtype: str) -> tuple[PixelFlowHandle]:
        plan = plan_load("pixelflow", ckpt_name, dtype, family="pixelflow")
        model, release, source = load_pixelflow(plan.path, **plan.build_options)
        return (PixelFlowHandle(wrap_module(model, load_device=plan.device), release, source),)


class FlowARFlanT5Loader:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = (
        "Load the Flan-T5-XL text encoder that PixelFlow text-to-image was trained with, from models/text_encoders: "
        "a Hugging Face folder (with config.json) or a single encoder file used with ComfyUI's T5 tokenizer."
    )
    RETURN_TYPES = ("FLAN_T5",)
    RETURN_NAMES = ("text_encoder",)
    OUTPUT_TOOLTIPS = ("Flan-T5 encoder and tokenizer for the PixelFlow Text Encode node.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        choices = folders.list_model_dirs(T5_FOLDER) + folders.list_files(T5_FOLDER)
        return {
            "required": {
                "t5_name": (choices, {
                    "tooltip": "google/flan-t5-xl folder (config.json + weights) or an encoder-only weights file."}),
                "dtype": (list(T5_DTYPES), {
                    "default": "fp32",
                    "tooltip": "fp32 as the official pipeline runs it; bf16 halves memory (T5 overflows in fp16)."}),
            }
        }

    def load(self, t5_name: str, dtype: str) -> tuple[FlanT5Handle]:
        path = folders.resolve(T5_FOLDER, t5_name, where_to_get=T5_WHERE_TO_GET)
        tokenizer_dirs = [path if path.is_dir() else path.parent, *folders.shipped_t5_tokenizer_dirs()]
        weight_dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
        encoder = load_t5_encoder(path, tokenizer_dirs=tokenizer_dirs, dtype=weight_dtype)
        return (FlanT5Handle(wrap_module(encoder.model), encoder),)


class FlowARPixelFlowTextEncode:
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    DESCRIPTION = (
        "Encode a prompt (and the negative prompt, empty by default as in the official pipeline) with Flan-T5 for "
        "PixelFlow text-to-image; tokens are padded to max_length with an attention mask."
    )
    RETURN_TYPES = ("PIXELFLOW_COND",)
    RETURN_NAMES = ("conditioning",)
    OUTPUT_TOOLTIPS = ("Prompt and negative-prompt embeddings with their masks, for the PixelFlow Sampler.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "text_encoder": ("FLAN_T5", {"tooltip": "From the Flan-T5 Loader."}),
                "prompt": ("STRING", {"multiline": True, "default": "", "tooltip": "What to generate."}),
                "negative_prompt": ("STRING", {
                    "multiline": True, "default": "",
                    "tooltip": "The unconditional branch of guidance; the official pipeline uses an empty one."}),
                "max_length": ("INT", {"default": 512, "min": 8, "max": 2048, "step": 8,
                                       "tooltip": "Tokens per prompt (padded/truncated); PixelFlow uses 512."}),
            }
        }

    def encode(self, text_encoder: FlanT5Handle, prompt: str, negative_prompt: str, max_length: int
               ) -> tuple[TextCondition]:
        if not prompt.strip():
            raise ValueError("PixelFlow Text Encode: the prompt is empty; describe the image to generate")
        load_models([text_encoder.patcher])
        context, mask = text_encoder.encoder.encode([negative_prompt, prompt], max_length=max_length)
        rest = intermediate_device()
        return (TextCondition(context[1:].to(rest), mask[1:].to(rest), context[:1].to(rest), mask[:1].to(rest)),)


def parse_stage_steps(text: str, steps: int, num_stages: int) -> list[int]:
    """Per-stage step counts: ``steps`` for every stage, or a comma list such as ``"10,10,20,30"``."""
    if not text.strip():
        return [steps] * num_stages
    try:
        values = [int(part) for part in text.replace(" ", "").split(",")]
    except ValueError:
        raise ValueError(f"stage_steps must be comma-separated integers like '10,10,20,30', got {text!r}") from None
    if len(values) != num_stages or min(values) < 1:
        raise ValueError(f"stage_steps needs {num_stages} positive counts (one per stage), got {text!r}")
    return values


def build_condition(handle: PixelFlowHandle, class_index: int, conditioning: TextCondition | None, batch: int
                    ) -> ClassCondition | TextCondition:
    """The sampler's conditioning for ``batch`` images, checked against what the model was trained on."""
    release = handle.release
    if release.class_conditional:
        if conditioning is not None:
            raise ValueError("this PixelFlow model is class-to-image: disconnect the text conditioning and pick a "
                             "class")
        if not 0 <= class_index < release.model.num_classes:
            raise ValueError(f"class_index {class_index} is out of range: this model has classes "
                             f"0..{release.model.num_classes - 1}")
        return ClassCondition(torch.full((batch,), class_index, dtype=torch.long), release.null_label)
    if conditioning is None:
        raise ValueError("this PixelFlow model is text-to-image: connect a PixelFlow Text Encode conditioning")
    width = conditioning.context.shape[-1]
    if width != release.model.cross_attention_dim:
        raise ValueError(f"the conditioning has width {width} but the model expects "
                         f"{release.model.cross_attention_dim}: use the text encoder the model was trained with "
                         "(Flan-T5-XL)")
    repeat = lambda t: t.expand(batch, *t.shape[1:])  # noqa: E731 - (1, ...) -> (batch, ...)
    return TextCondition(repeat(conditioning.context), repeat(conditioning.mask),
                         repeat(conditioning.negative_context), repeat(conditioning.negative_mask))


class FlowARPixelFlowSampler:
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    DESCRIPTION = (
        "PixelFlow cascade sampling in pixel space: the lowest resolution first, then upsample and re-noise at each "
        "stage. Class-to-image takes a class index, text-to-image a PixelFlow conditioning. With an image and "
        "strength < 1 it does image-to-image. With a reward connected, the final stage is a reward search (RBF "
        "by default) over that many model evaluations per image."
    )
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("Generated images, batch_size x size x size.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": ("PIXELFLOW_MODEL", {"tooltip": "From the PixelFlow Loader."}),
                "seed": seed_input("Same seed, same images (noise is drawn on the CPU)."),
                "steps": ("INT", {"default": defaults.STEPS_PER_STAGE, "min": 1, "max": 200,
                                  "tooltip": "Steps per stage (the official demo uses 10, the FID evaluation 30)."}),
                "cfg": ("FLOAT", {"default": defaults.CFG, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "Guidance scale; 0 turns guidance off (no unconditional pass)."}),
                "cfg_schedule": (list(GUIDANCE_SCHEDULES), {
                    "default": defaults.CFG_SCHEDULE,
                    "tooltip": "official: class models ramp guidance over the 4 stages, text models keep it "
                               "constant; constant: cfg at every stage; linear: from 1 to cfg."}),
                "shift": ("FLOAT", {"default": defaults.SHIFT, "min": 0.1, "max": 100.0, "step": 0.1,
                                    "tooltip": "Time shift of each stage's grid (1 = uniform, as released)."}),
                "solver": (list(STAGE_SOLVERS), {
                    "default": defaults.SOLVER,
                    "tooltip": "euler: fixed steps (official default); dopri5: adaptive, steps ignored."}),
                "size": ("INT", {"default": defaults.SIZE, "min": 8, "max": 4096, "step": 8,
                                 "tooltip": "Square image size; a multiple of patch x 2^(stages-1) (32 for the "
                                            "released models)."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Images per run."}),
                "class_index": ("INT", {"default": 207, "min": 0, "max": 9999,
                                        "tooltip": "ImageNet class for class-to-image models (see ImageNet Class)."}),
            },
            "optional": {
                "conditioning": ("PIXELFLOW_COND", {"tooltip": "Text conditioning for text-to-image models."}),
                "image": ("IMAGE", {"tooltip": "Start image for image-to-image (resized to size)."}),
                "strength": ("FLOAT", {"default": defaults.STRENGTH, "min": 0.01, "max": 1.0, "step": 0.01,
                                       "tooltip": "Image-to-image: how much is regenerated (1 = ignore the image)."}),
                "stage_steps": ("STRING", {"default": "",
                                           "tooltip": "Optional steps per stage, e.g. '10,10,20,30' (overrides steps)."}),
                "reward": ("REWARD", {"tooltip": "Search the final stage for images this reward likes (unconnected: "
                                                 "plain sampling)."}),
                "search_method": (list(METHODS), {
                    "default": defaults.SEARCH_METHOD,
                    "tooltip": "rbf: Rollover Budget Forcing; best_of_n; smc; svdd; search_over_paths. Each runs its "
                               "official loop on the final stage, then finishes the chosen particle with the ODE."}),
                "search_max_nfe": ("INT", {"default": defaults.SEARCH_MAX_NFE, "min": 1, "max": 10000,
                                           "tooltip": "Model evaluations per image for the searched stage (the "
                                                      "paper uses 500)."}),
                "search_steps": ("INT", {"default": defaults.SEARCH_STEPS, "min": 2, "max": 200,
                                         "tooltip": "Denoising steps of the search grid in the final stage."}),
            },
        }

    def sample(self, model: PixelFlowHandle, seed: int, steps: int, cfg: float, cfg_schedule: str, shift: float,
               solver: str, size: int, batch_size: int, class_index: int, conditioning: TextCondition | None = None,
               image: torch.Tensor | None = None, strength: float = 0.6, stage_steps: str = "",
               reward: object | None = None, search_method: str = "rbf", search_max_nfe: int = 100,
               search_steps: int = 10) -> tuple[torch.Tensor]:
        release, config = model.release, model.release.model
        check_size(size, config.patch_size, release.num_stages)
        steps_per_stage = parse_stage_steps(stage_steps, steps, release.num_stages)
        condition = build_condition(model, class_index, conditioning, batch_size)
        guidance = stage_guidance(cfg, release.num_stages, cfg_schedule, class_conditional=release.class_conditional)
        schedule = cascade_schedule(release.num_train_timesteps, release.num_stages)
        start = image_to_pixels(image, size, batch_size) if image is not None else None

        solvers = [STAGE_SOLVERS[solver]] * release.num_stages
        patchers = [model.patcher]
        if reward is not None:  # nodes.rewards.Reward: score(images [B, H, W, C] 0..1) -> [B], and its patchers
            settings = SearchSettings(method=search_method, max_nfe=search_max_nfe, steps=search_steps)
            search_plan(settings, 1.0 - schedule.start_t[-1])  # budget errors now, not after the lower stages
            noise = SeededFlowSearchNoise(seed ^ defaults.SEARCH_SEED_SALT)
            solvers[-1] = search_stage_solver(settings, reward.score, schedule, noise)
            patchers += list(reward.patchers)
        load_models(patchers)
        velocity = GuidedVelocity(model.patcher.model, condition, guidance, patch_size=config.patch_size,
                                  head_dim=config.attention_head_dim, use_cfg=cfg > 0)
        progress = Progress(sum(steps_per_stage), label="PixelFlow")
        with torch.no_grad():
            pixels = sample_cascade(
                velocity, schedule, batch=batch_size, size=size, steps=steps_per_stage, shift=shift,
                noise=SeededPixelFlowNoise(seed, schedule.gamma), solvers=solvers,
                device=model.patcher.load_device, channels=config.in_channels, image=start,
                strength=strength if start is not None else 1.0, callback=progress,
            )
        return (pixels_to_image(pixels).to(intermediate_device()),)


NODE_CLASS_MAPPINGS = {
    "FlowARPixelFlowLoader": FlowARPixelFlowLoader,
    "FlowARFlanT5Loader": FlowARFlanT5Loader,
    "FlowARPixelFlowTextEncode": FlowARPixelFlowTextEncode,
    "FlowARPixelFlowSampler": FlowARPixelFlowSampler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FlowARPixelFlowLoader": "PixelFlow Loader (FlowAR)",
    "FlowARFlanT5Loader": "Flan-T5 Loader (FlowAR)",
    "FlowARPixelFlowTextEncode": "PixelFlow Text Encode (FlowAR)",
    "FlowARPixelFlowSampler": "PixelFlow Sampler (FlowAR)",
}
