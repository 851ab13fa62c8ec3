"""PixelFlow nodes: checkpoint loader, Flan-T5 loader + text encode, and the cascade sampler (IMAGE out).

Glue only: files are found through the runtime bridge, models wrapped for ComfyUI's memory manager, and the
sampling itself is :func:`samplers.pixelflow.cascade.sample_cascade`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

from ..models.flan_t5 import T5TextEncoder, load_t5_encoder
from ..models.pixelflow_release import PixelFlowRelease, load_pixelflow
from ..samplers.common import Trace
from ..samplers.flow_search.settings import METHODS
from ..samplers.pixelflow import defaults
from ..samplers.pixelflow.cascade import check_size, sample_cascade
from ..samplers.pixelflow.noise import SeededCascadeSearchNoise, SeededPixelFlowNoise
from ..samplers.pixelflow.search import CascadeSearchSettings, plan_for, search_cascade
from ..samplers.pixelflow.stage import STAGE_SOLVERS
from ..samplers.pixelflow.guidance import GUIDANCE_SCHEDULES, ClassCondition, GuidedVelocity, TextCondition, \
    stage_guidance
from ..samplers.pixelflow.schedule import cascade_schedule
from ..samplers.pixels import image_to_pixels, pixels_to_image
from .common import plan_load, seed_input
from .runtime import folders
from .runtime.devices import DTYPE_CHOICES, intermediate_device
from .runtime.messages import SEARCH_TRACE_EVENT, progress_text, send_event
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
        "strength < 1 it does image-to-image. With a reward connected, it searches across the cascade (RBF by "
        "default) for images the reward likes, spending search_max_nfe model calls per image."
    )
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("image", "trace")
    OUTPUT_TOOLTIPS = ("Generated images, batch_size x size x size.",
                       "The reward search's steps, one JSON line each (empty without a reward).")

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
                "reward": ("REWARD", {"tooltip": "Search across the cascade for images this reward likes "
                                                 "(unconnected: plain sampling)."}),
                "search_method": (list(METHODS), {
                    "default": defaults.SEARCH_METHOD,
                    "tooltip": "rbf: Rollover Budget Forcing; best_of_n: the best of independent images; smc: "
                               "resampling particles; svdd: best of several proposals per step; search_over_paths: "
                               "re-noise the best images and re-run them."}),
                "search_max_nfe": ("INT", {"default": defaults.SEARCH_MAX_NFE, "min": 1, "max": 10000,
                                           "tooltip": "Model calls per image over the whole cascade; a plain image "
                                                      "costs the sum of the steps per stage (k times that is about "
                                                      "k times the time)."}),
                "search_steps": ("INT", {"default": defaults.SEARCH_STEPS, "min": 1, "max": 200,
                                         "tooltip": "Steps per stage from search_first_stage on while searching."}),
                "search_first_stage": ("INT", {
                    "default": defaults.SEARCH_FIRST_STAGE, "min": 0, "max": 15,
                    "tooltip": "The stage where the search starts choosing (0 = the lowest resolution). Before it "
                               "the reward cannot read the tiny predictions, so particles only advance."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def sample(self, model: PixelFlowHandle, seed: int, steps: int, cfg: float, cfg_schedule: str, shift: float,
               solver: str, size: int, batch_size: int, class_index: int, conditioning: TextCondition | None = None,
               image: torch.Tensor | None = None, strength: float = defaults.STRENGTH, stage_steps: str = "",
               reward: object | None = None, search_method: str = defaults.SEARCH_METHOD,
               search_max_nfe: int = defaults.SEARCH_MAX_NFE, search_steps: int = defaults.SEARCH_STEPS,
               search_first_stage: int = defaults.SEARCH_FIRST_STAGE, unique_id: str | None = None
               ) -> tuple[torch.Tensor, str]:
        release, config = model.release, model.release.model
        check_size(size, config.patch_size, release.num_stages)
        steps_per_stage = parse_stage_steps(stage_steps, steps, release.num_stages)
        condition = build_condition(model, class_index, conditioning, batch_size)
        guidance = stage_guidance(cfg, release.num_stages, cfg_schedule, class_conditional=release.class_conditional)
        schedule = cascade_schedule(release.num_train_timesteps, release.num_stages)
        start = image_to_pixels(image, size, batch_size) if image is not None else None
        strength = strength if start is not None else 1.0
        search = None
        if reward is not None:  # nodes.rewards.Reward: score(images [B, H, W, C] 0..1) -> [B], and its patchers
            if solver != "euler":
                raise ValueError(f"the reward search moves along the Euler grid; set solver to euler (got {solver})")
            search = CascadeSearchSettings(method=search_method, max_nfe=search_max_nfe,
                                           first_stage=search_first_stage)
            steps_per_stage = [n if stage < search_first_stage else search_steps
                               for stage, n in enumerate(steps_per_stage)]
            plan_for(search, schedule, steps_per_stage, shift)  # budget errors now, before any model call
        load_models([model.patcher, *(reward.patchers if reward is not None else [])])
        velocity = GuidedVelocity(model.patcher.model, condition, guidance, patch_size=config.patch_size,
                                  head_dim=config.attention_head_dim, use_cfg=cfg > 0)
        noise = SeededPixelFlowNoise(seed, schedule.gamma)
        arguments = dict(batch=batch_size, size=size, steps=steps_per_stage, shift=shift, noise=noise,
                         device=model.patcher.load_device, channels=config.in_channels, image=start, strength=strength)
        with torch.no_grad():
            if search is None:
                progress = Progress(sum(steps_per_stage), label="PixelFlow", node_id=unique_id)
                pixels = sample_cascade(velocity, schedule, solvers=[STAGE_SOLVERS[solver]] * release.num_stages,
                                        callback=progress, **arguments)
                return pixels_to_image(pixels).to(intermediate_device()), ""
            traces = [Trace() for _ in range(batch_size)]
            pixels = search_cascade(velocity, schedule, search, reward.score,
                                    search_noise=SeededCascadeSearchNoise(seed ^ defaults.SEARCH_SEED_SALT),
                                    callback=SearchProgress(search, traces, unique_id), traces=traces,
                                    **arguments).pixels
        trace = "\n".join(json.dumps({"item": item, **row}) for item, rows in enumerate(traces) for row in rows.rows)
        return pixels_to_image(pixels).to(intermediate_device()), trace


class SearchProgress:
    """The reward search's progress: the bar (with the best image so far), a text line (stage, NFE, best reward)
    and the newest trace row as a browser event, like the Flow Search Sampler's."""

    def __init__(self, settings: CascadeSearchSettings, traces: list[Trace], node_id: str | None) -> None:
        self.settings, self.traces, self.node_id = settings, traces, node_id
        self.bar = Progress(1, label="PixelFlow search", node_id=node_id)
        self.sent = [0] * len(traces)

    def __call__(self, done: int, total: int, preview: torch.Tensor | None) -> None:
        per_image = total // len(self.traces)
        item = min(max(done - 1, 0) // per_image, len(self.traces) - 1)  # done counts NFE over the batch, from 1
        rows = self.traces[item].rows
        if rows:
            row = rows[-1]
            best = row.get("best")
            text = (f"{self.settings.method}: stage {row.get('stage')}, {row.get('nfe')}/{per_image} NFE"
                    + (f", best reward {best:.4g}" if best is not None else ""))
            progress_text(text + (f" (image {item + 1}/{len(self.traces)})" if len(self.traces) > 1 else ""),
                          self.node_id)
            for new_row in rows[self.sent[item]:]:
                send_event(SEARCH_TRACE_EVENT, {"node": self.node_id, "item": item, "row": new_row})
            self.sent[item] = len(rows)
        self.bar(done, total, preview)


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
