"""Reward nodes: one loader per reward model (``REWARD_MODEL``), a node binding a model to a prompt (``REWARD``, what
the flow-search samplers maximise), a weighted combination, and a node that scores and ranks an IMAGE batch.

Glue only: the rewards are :mod:`models.rewards`; files come from ``ComfyUI/models/rewards`` (Hugging Face folders
listed as the sub-folders holding a ``config.json``, single files such as the aesthetic head by name).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import Tensor

from ..models.rewards import RewardModel
from ..models.rewards.aesthetic import WHERE_TO_GET as AESTHETIC_WHERE
from ..models.rewards.aesthetic import load_aesthetic
from ..models.rewards.clip_score import WHERE_TO_GET as CLIP_WHERE
from ..models.rewards.clip_score import load_clip_score
from ..models.rewards.count_filter import CountSettings
from ..models.rewards.counting import DETECTOR_WHERE, SAM_WHERE, load_counting
from ..models.rewards.pickscore import WHERE_TO_GET as PICKSCORE_WHERE
from ..models.rewards.pickscore import load_pickscore
from ..models.rewards.shapes_count import MODES as SHAPES_COUNT_MODES
from ..models.rewards.shapes_count import ShapesCountReward
from ..models.rewards.vqascore import WHERE_TO_GET as VQASCORE_WHERE
from ..models.rewards.vqascore import load_vqascore
from .runtime import folders
from .runtime.devices import DTYPE_CHOICES, choose_dtype, compute_device
from .runtime.patcher import load_models, wrap_module
from .runtime.progress import check_interrupt

CATEGORY = "FlowAR/Rewards"
FOLDER = "rewards"
NONE = "none"
SAME_FOLDER = "(model folder)"
ALL_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@dataclass(frozen=True)
class RewardModelHandle:
    """The ``REWARD_MODEL`` payload: a reward model and its modules wrapped for ComfyUI's memory manager."""

    model: RewardModel
    patchers: tuple


@dataclass(frozen=True)
class Reward:
    """The REWARD socket payload: images [B,H,W,C] 0..1 -> scores [B] (float32, CPU, higher is better)."""
    name: str                      # for progress text and traces, e.g. "VQAScore('a red cube')"
    score: Callable[[Tensor], Tensor]
    patchers: tuple = ()           # wrapped models to load (nodes.runtime.patcher.load_models) before scoring


def wrap_reward_model(model: RewardModel) -> RewardModelHandle:
    """Wrap every module of ``model`` to run on the compute device."""
    device = compute_device()
    return RewardModelHandle(model, tuple(wrap_module(module, load_device=device) for module in model.modules))


def reward_dtype(choice: str, supported: tuple[torch.dtype, ...] = ALL_DTYPES) -> torch.dtype:
    """The weight dtype for a loader's ``dtype`` choice; ``auto`` picks among ``supported`` for the device."""
    return choose_dtype(choice, compute_device(), supported=supported)


def resolve_dir(name: str, where_to_get: str) -> Path:
    """The folder ``name`` listed under ``models/rewards``, or an error naming every folder searched."""
    return folders.resolve(FOLDER, name, where_to_get=where_to_get)


def loose_files() -> list[str]:
    """Model files in ``models/rewards`` outside the Hugging Face folders (e.g. the aesthetic head)."""
    inside = tuple(f"{folder}/" for folder in folders.list_model_dirs(FOLDER))
    return [name for name in folders.list_files(FOLDER) if not name.startswith(inside)]


def score_in_batches(handle: RewardModelHandle, prompt: str, batch_size: int, images: Tensor) -> Tensor:
    """``handle.model.score`` over ``images`` in chunks of ``batch_size``, models loaded first, without autograd;
    a cancel in ComfyUI stops between chunks."""
    load_models(handle.patchers)
    scores = []
    with torch.no_grad():
        for chunk in images.split(batch_size):
            check_interrupt()
            scores.append(handle.model.score(chunk, prompt).float().cpu())
    return torch.cat(scores)  # (B,)


def make_reward(handle: RewardModelHandle, prompt: str, batch_size: int = 4) -> Reward:
    """``handle``'s model bound to ``prompt``, checked now so a bad prompt fails before any sampling starts."""
    handle.model.check_prompt(prompt)
    name = f"{handle.model.name}({prompt.strip()!r})" if prompt.strip() else handle.model.name
    return Reward(name, partial(score_in_batches, handle, prompt, batch_size), handle.patchers)


def combine_rewards(terms: Sequence[tuple[Reward, float]]) -> Reward:
    """``sum_i w_i r_i``: one REWARD whose patchers are all the terms' (loaded together), zero weights skipped."""
    active = [(reward, weight) for reward, weight in terms if weight != 0]
    if not active:
        raise ValueError("Combine Rewards: every weight is 0, so the combination would score every image 0")
    unique = {id(p): p for reward, _ in active for p in reward.patchers}  # one model may serve several terms
    name = " + ".join(f"{weight:g}*{reward.name}" for reward, weight in active)
    return Reward(name, partial(_weighted_sum, active, tuple(unique.values())), tuple(unique.values()))


def _weighted_sum(terms: Sequence[tuple[Reward, float]], patchers: tuple, images: Tensor) -> Tensor:
    load_models(patchers)
    return sum(weight * reward.score(images) for reward, weight in terms)  # (B,)


def rank_text(scores: Tensor, order: Tensor, name: str) -> str:
    """One line per image, best first: rank, index in the input batch, score."""
    lines = [name] + [f"#{rank}: image {int(i)} = {float(scores[i]):.6g}" for rank, i in enumerate(order, 1)]
    return "\n".join(lines)


# ---- loaders --------------------------------------------------------------------------------------------------
class FlowARVQAScoreLoader:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = (
        "Load CLIP-FlanT5 (zhiqiulin/clip-flant5-xxl or -xl folder in models/rewards) for VQAScore: the probability "
        "that the model answers 'Yes' to 'Does this figure show \"<prompt>\"?', the reward of RBF's compositional "
        "text-to-image experiments."
    )
    RETURN_TYPES = ("REWARD_MODEL",)
    RETURN_NAMES = ("reward_model",)
    OUTPUT_TOOLTIPS = ("VQAScore model; give it a prompt with the Reward node.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model_name": (folders.list_model_dirs(FOLDER), {
                    "tooltip": "A CLIP-FlanT5 folder (config.json, weights, tokenizer files) in models/rewards; XXL "
                               "is the paper's, XL needs a third of the memory."}),
                "dtype": (["auto", "bf16", "fp32"], {
                    "default": "auto",
                    "tooltip": "bf16 is the official precision (auto: bf16 on a GPU that has it, else fp32)."}),
            }
        }

    def load(self, model_name: str, dtype: str) -> tuple[RewardModelHandle]:
        folder = resolve_dir(model_name, VQASCORE_WHERE)
        weight_dtype = reward_dtype(dtype, (torch.bfloat16, torch.float32))
        model = load_vqascore(folder, tokenizer_dirs=folders.shipped_t5_tokenizer_dirs(), dtype=weight_dtype)
        return (wrap_reward_model(model),)


class FlowARCountingRewardLoader:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = (
        "Load GroundingDINO (IDEA-Research/grounding-dino-base) and optionally SAM (facebook/sam-vit-base) from "
        "models/rewards for the counting reward of RBF: objects are detected per class and the reward is minus the "
        "sum of squared count errors (0 = every count right). Prompts look like 'seven balloons, four bears'."
    )
    RETURN_TYPES = ("REWARD_MODEL",)
    RETURN_NAMES = ("reward_model",)
    OUTPUT_TOOLTIPS = ("Counting reward model; give it a counting prompt with the Reward node.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        model_dirs = folders.list_model_dirs(FOLDER)
        return {
            "required": {
                "detector_name": (model_dirs, {"tooltip": "The GroundingDINO folder in models/rewards."}),
                "sam_name": ([NONE, *model_dirs], {
                    "default": NONE,
                    "tooltip": "A SAM folder to refine boxes into masks as the official 'gdsam' pipeline does; "
                               "none: the boxes themselves serve as masks (faster)."}),
                "dtype": (["fp32", "bf16"], {"default": "fp32", "tooltip": "fp32 as officially; bf16 saves memory."}),
            },
            "optional": {
                "nms_iou": ("FLOAT", {
                    "default": 0.5, "min": 0.05, "max": 1.0, "step": 0.05,
                    "tooltip": "Boxes of one class overlapping more than this (IoU) count once; 1 turns it off, as in "
                               "the official pipeline."}),
                "cross_class_iou": ("FLOAT", {
                    "default": 0.8, "min": 0.05, "max": 1.0, "step": 0.05,
                    "tooltip": "Boxes of two classes overlapping more than this count once, for the higher score; "
                               "1 turns it off, as in the official pipeline."}),
            },
        }

    def load(self, detector_name: str, sam_name: str, dtype: str, nms_iou: float = 0.5,
             cross_class_iou: float = 0.8) -> tuple[RewardModelHandle]:
        detector = resolve_dir(detector_name, DETECTOR_WHERE)
        sam = None if sam_name == NONE else resolve_dir(sam_name, SAM_WHERE)
        settings = CountSettings(nms_iou=nms_iou, cross_class_iou=cross_class_iou)
        model = load_counting(detector, sam_folder=sam, settings=settings, dtype=reward_dtype(dtype))
        return (wrap_reward_model(model),)


def clip_loader_inputs(what: str) -> dict:
    """The inputs shared by the CLIP-based loaders: the folder and the dtype."""
    return {
        "model_name": (folders.list_model_dirs(FOLDER), {"tooltip": f"The {what} folder in models/rewards."}),
        "dtype": (list(DTYPE_CHOICES), {
            "default": "auto",
            "tooltip": "auto: ComfyUI's choice for the device (RBF runs these in the generator's bf16); fp32 is "
                       "exact."}),
    }


class FlowARCLIPScoreLoader:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = (
        "Load a CLIP model (e.g. openai/clip-vit-large-patch14, a Hugging Face folder in models/rewards) for the CLIP "
        "score: the cosine similarity of image and prompt embeddings (about 0.2-0.35 for matching pairs)."
    )
    RETURN_TYPES = ("REWARD_MODEL",)
    RETURN_NAMES = ("reward_model",)
    OUTPUT_TOOLTIPS = ("CLIP score model; give it a prompt with the Reward node.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": clip_loader_inputs("CLIP")}

    def load(self, model_name: str, dtype: str) -> tuple[RewardModelHandle]:
        model = load_clip_score(resolve_dir(model_name, CLIP_WHERE), dtype=reward_dtype(dtype))
        return (wrap_reward_model(model),)


class FlowARPickScoreLoader:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = (
        "Load PickScore (yuvalkirstain/PickScore_v1, a CLIP-H folder in models/rewards), a CLIP fine-tuned on human "
        "preferences; scored as in RBF: the cosine of image and prompt embeddings."
    )
    RETURN_TYPES = ("REWARD_MODEL",)
    RETURN_NAMES = ("reward_model",)
    OUTPUT_TOOLTIPS = ("PickScore model; give it a prompt with the Reward node.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": clip_loader_inputs("PickScore_v1"),
            "optional": {
                "tokenizer_from": ([SAME_FOLDER, *folders.list_model_dirs(FOLDER)], {
                    "default": SAME_FOLDER,
                    "tooltip": "Where the CLIP tokenizer is, if the PickScore folder has none: any CLIP folder (RBF "
                               "uses openai/clip-vit-large-patch14's)."}),
            },
        }

    def load(self, model_name: str, dtype: str, tokenizer_from: str = SAME_FOLDER) -> tuple[RewardModelHandle]:
        tokenizer_dirs = [] if tokenizer_from == SAME_FOLDER else [resolve_dir(tokenizer_from, CLIP_WHERE)]
        model = load_pickscore(resolve_dir(model_name, PICKSCORE_WHERE), tokenizer_dirs=tokenizer_dirs,
                               dtype=reward_dtype(dtype))
        return (wrap_reward_model(model),)


class FlowARAestheticLoader:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = (
        "Load the LAION aesthetic predictor: the head sac+logos+ava1-l14-linearMSE.pth on CLIP ViT-L/14 image "
        "embeddings (openai/clip-vit-large-patch14 folder), both in models/rewards. Scores on a 1-10 scale; the "
        "prompt is ignored."
    )
    RETURN_TYPES = ("REWARD_MODEL",)
    RETURN_NAMES = ("reward_model",)
    OUTPUT_TOOLTIPS = ("Aesthetic score model; use it with the Reward node (any prompt).",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                **clip_loader_inputs("openai/clip-vit-large-patch14"),
                "head_name": (loose_files(), {
                    "tooltip": "sac+logos+ava1-l14-linearMSE.pth (from christophschuhmann/improved-aesthetic-"
                               "predictor) in models/rewards."}),
            }
        }

    def load(self, model_name: str, dtype: str, head_name: str) -> tuple[RewardModelHandle]:
        clip = resolve_dir(model_name, AESTHETIC_WHERE)
        head = folders.resolve(FOLDER, head_name, where_to_get=AESTHETIC_WHERE)
        model = load_aesthetic(clip, head, dtype=reward_dtype(dtype))
        return (wrap_reward_model(model),)


class FlowARShapesCountReward:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = (
        "The shape-count reward of the built-in shapes world (no files): finds the circles, squares and triangles of "
        "each colour in 32x32 images on black and compares their counts with a caption such as 'three blue squares' "
        "or 'two red circles and one green triangle'. Every class the caption does not name is wanted 0 times."
    )
    RETURN_TYPES = ("REWARD_MODEL",)
    RETURN_NAMES = ("reward_model",)
    OUTPUT_TOOLTIPS = ("Shape-count reward; give it a shapes-world caption with the Reward node.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "mode": (list(SHAPES_COUNT_MODES), {
                    "default": "squared_error",
                    "tooltip": "squared_error: minus the sum of squared count errors over every class (0 = right); "
                               "exact: 1 when every count is right, else 0."}),
            }
        }

    def load(self, mode: str) -> tuple[RewardModelHandle]:
        return (wrap_reward_model(ShapesCountReward(mode)),)


# ---- rewards ---------------------------------------------------------------------------------------------------
class FlowARReward:
    CATEGORY = CATEGORY
    FUNCTION = "make"
    DESCRIPTION = (
        "Bind a reward model to a prompt: the REWARD the flow-search samplers maximise and Rank Images uses. VQAScore, "
        "CLIP score and PickScore compare images with the prompt; the counting reward reads counts from it ('seven "
        "balloons, four bears'); the aesthetic score ignores it."
    )
    RETURN_TYPES = ("REWARD",)
    RETURN_NAMES = ("reward",)
    OUTPUT_TOOLTIPS = ("Scores images (higher is better).",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "reward_model": ("REWARD_MODEL", {"tooltip": "From one of the reward loaders."}),
                "prompt": ("STRING", {
                    "multiline": True, "default": "",
                    "tooltip": "The text to score against (usually the generation prompt); for counting, the counts "
                               "and objects, e.g. 'seven balloons, four bears'."}),
            },
            "optional": {
                "batch_size": ("INT", {"default": 4, "min": 1, "max": 256,
                                       "tooltip": "Images scored per forward pass; lower it if memory runs out."}),
            },
        }

    def make(self, reward_model: RewardModelHandle, prompt: str, batch_size: int = 4) -> tuple[Reward]:
        return (make_reward(reward_model, prompt, batch_size),)


class FlowARRewardCombine:
    CATEGORY = CATEGORY
    FUNCTION = "combine"
    DESCRIPTION = (
        "A weighted sum of 2 to 4 rewards (e.g. VQAScore + 0.1 x aesthetic). Scales differ between rewards (VQAScore "
        "0..1, aesthetic 1..10, counting -squared errors), so choose weights accordingly."
    )
    RETURN_TYPES = ("REWARD",)
    RETURN_NAMES = ("reward",)
    OUTPUT_TOOLTIPS = ("The combined reward; all its models are loaded together before scoring.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        def weight(default: float) -> tuple:
            return ("FLOAT", {"default": default, "min": -100.0, "max": 100.0, "step": 0.01,
                              "tooltip": "Multiplies this reward's scores (0 leaves it out)."})

        def reward(note: str) -> tuple:
            return ("REWARD", {"tooltip": f"A reward to add{note}."})

        return {
            "required": {"reward_1": reward(""), "weight_1": weight(1.0), "reward_2": reward(""),
                         "weight_2": weight(1.0)},
            "optional": {"reward_3": reward(" (optional)"), "weight_3": weight(1.0),
                         "reward_4": reward(" (optional)"), "weight_4": weight(1.0)},
        }

    def combine(self, reward_1: Reward, weight_1: float, reward_2: Reward, weight_2: float,
                reward_3: Reward | None = None, weight_3: float = 1.0, reward_4: Reward | None = None,
                weight_4: float = 1.0) -> tuple[Reward]:
        terms = [(reward_1, weight_1), (reward_2, weight_2), (reward_3, weight_3), (reward_4, weight_4)]
        return (combine_rewards([(reward, weight) for reward, weight in terms if reward is not None]),)


class FlowARRankImages:
    CATEGORY = CATEGORY
    FUNCTION = "rank"
    DESCRIPTION = (
        "Score every image of a batch with a reward and sort them best first (Best-of-N on images you already have). "
        "Ties keep the input order."
    )
    RETURN_TYPES = ("IMAGE", "STRING", "INT")
    RETURN_NAMES = ("images", "scores", "best_index")
    OUTPUT_TOOLTIPS = (
        "The images sorted by score, best first (only the top_k when it is set).",
        "One line per image: rank, index in the input batch, score.",
        "Index of the best image in the input batch.",
    )

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to score."}),
                "reward": ("REWARD", {"tooltip": "From the Reward or Combine Rewards node."}),
            },
            "optional": {
                "top_k": ("INT", {"default": 0, "min": 0, "max": 4096,
                                  "tooltip": "Keep only the k best images (0 keeps all)."}),
            },
        }

    def rank(self, images: Tensor, reward: Reward, top_k: int = 0) -> tuple[Tensor, str, int]:
        scores = reward.score(images).float()  # (B,)
        if scores.shape != (images.shape[0],):
            raise ValueError(f"the reward {reward.name} returned {tuple(scores.shape)} scores for {images.shape[0]} "
                             "images")
        order = torch.sort(scores.nan_to_num(nan=-torch.inf), descending=True, stable=True).indices  # (B,)
        kept = order[:top_k] if top_k > 0 else order
        return images[kept.to(images.device)], rank_text(scores, order, reward.name), int(order[0])


NODE_CLASS_MAPPINGS = {
    "FlowARVQAScoreLoader": FlowARVQAScoreLoader,
    "FlowARCountingRewardLoader": FlowARCountingRewardLoader,
    "FlowARCLIPScoreLoader": FlowARCLIPScoreLoader,
    "FlowARPickScoreLoader": FlowARPickScoreLoader,
    "FlowARAestheticLoader": FlowARAestheticLoader,
    "FlowARReward": FlowARReward,
    "FlowARRewardCombine": FlowARRewardCombine,
    "FlowARRankImages": FlowARRankImages,
    "FlowARShapesCountReward": FlowARShapesCountReward,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FlowARVQAScoreLoader": "VQAScore Loader (FlowAR)",
    "FlowARCountingRewardLoader": "Counting Reward Loader (FlowAR)",
    "FlowARCLIPScoreLoader": "CLIP Score Loader (FlowAR)",
    "FlowARPickScoreLoader": "PickScore Loader (FlowAR)",
    "FlowARAestheticLoader": "Aesthetic Score Loader (FlowAR)",
    "FlowARReward": "Reward (FlowAR)",
    "FlowARRewardCombine": "Combine Rewards (FlowAR)",
    "FlowARRankImages": "Rank Images by Reward (FlowAR)",
    "FlowARShapesCountReward": "Shape-Count Reward (FlowAR)",
}
