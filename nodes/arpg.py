"""ARPG nodes: transformer and VQ tokenizer loaders, VQ encode/decode, and the randomized parallel sampler.

Glue only: files are found through the runtime bridge, models wrapped for ComfyUI's memory manager, and the
decoding itself is :func:`samplers.arpg.sample_arpg`. ``ARPG_TOKENS`` carries a token grid and which positions are
known, so an encoded image with a mask can be edited (inpainting, outpainting) and any grid decoded to an IMAGE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..models.arpg import ARPGConfig
from ..models.arpg_release import load_arpg, load_vq
from ..models.vq16 import VQConfig, VQModel
from ..samplers.arpg.decode import DecodeSettings, check_labels, sample_arpg
from ..samplers.arpg.noise import SeededARPGNoise
from ..samplers.arpg.schedule import CFG_SCHEDULES, DECODE_SCHEDULES
from ..samplers.common import KnownTokens, regenerated_tokens
from ..samplers.pixels import image_to_pixels, pixels_to_image
from .common import plan_load, seed_input
from .runtime import folders, host
from .runtime.devices import DTYPE_CHOICES, intermediate_device
from .runtime.patcher import load_models, wrap_module
from .runtime.progress import Progress

CATEGORY = "FlowAR/ARPG"
PREVIEWS_PER_RUN = 8  # decoding a preview costs one tokenizer pass; show at most this many per run
UNDECIDED_GRAY = 0.5


@dataclass(frozen=True)
class ARPGHandle:
    """The ``ARPG_MODEL`` payload: the wrapped transformer and its configuration."""

    patcher: object
    config: ARPGConfig
    source: str  # where the config came from


@dataclass(frozen=True)
class VQHandle:
    """The ``VQ_TOKENIZER`` payload: the wrapped tokenizer and its configuration."""

    patcher: object
    config: VQConfig
    source: str


@dataclass(frozen=True)
class ARPGTokens:
    """The ``ARPG_TOKENS`` payload: codebook indices ``tokens`` (B, h, w) int64 and ``known`` (h, w) bool, the
    positions a sampler keeps (all True for a finished grid)."""

    tokens: torch.Tensor
    known: torch.Tensor


def tokenizer_model(vq: VQHandle) -> VQModel:
    return vq.patcher.model


def check_image_size(image: torch.Tensor, multiple: int) -> None:
    """IMAGE sides must be whole numbers of tokens (``multiple`` pixels each)."""
    height, width = image.shape[1:3]
    if height % multiple or width % multiple or not (height and width):
        raise ValueError(f"image size {width}x{height} is not a multiple of {multiple} (one token per {multiple}x"
                         f"{multiple} pixels): resize or crop it, e.g. to {max(1, width // multiple) * multiple}x"
                         f"{max(1, height // multiple) * multiple}")


def one_token_set(regenerate: torch.Tensor) -> torch.Tensor:
    """The token positions (h, w) of a per-sample selection (B, h, w), which must be the same for every sample."""
    if not bool((regenerate == regenerate[:1]).all()):
        raise ValueError("the masks of the batch select different tokens: ARPG decodes one set of positions for the "
                         "whole batch; use one mask")
    return regenerate[0]


def encode_image(vq: VQHandle, image: torch.Tensor, mask: torch.Tensor | None) -> ARPGTokens:
    """Tokens of ``image`` with the positions outside the mask known (all known without a mask)."""
    size = vq.config.downsample
    check_image_size(image, size)
    pixels = image_to_pixels(image, tuple(image.shape[1:3]), image.shape[0])  # (B, 3, H, W), not resized
    grid = (pixels.shape[2] // size, pixels.shape[3] // size)
    regenerate = (one_token_set(regenerated_tokens(mask, pixels.shape[2:], grid)) if mask is not None
                  else torch.zeros(grid, dtype=torch.bool))
    load_models([vq.patcher])
    with torch.no_grad():
        tokens = tokenizer_model(vq).encode_indices(pixels.to(vq.patcher.load_device))
    return ARPGTokens(tokens.to(intermediate_device()), ~regenerate.cpu())


def decode_tokens(vq: VQHandle, tokens: torch.Tensor) -> torch.Tensor:
    """IMAGE ``[B, 16h, 16w, 3]`` in 0..1 of a token grid (B, h, w)."""
    if int(tokens.max()) >= vq.config.codebook_size or int(tokens.min()) < 0:
        raise ValueError(f"the tokens are not indices of this tokenizer's {vq.config.codebook_size} codes: decode "
                         "them with the tokenizer they were made with")
    load_models([vq.patcher])
    with torch.no_grad():
        pixels = tokenizer_model(vq).decode_indices(tokens.to(vq.patcher.load_device))
    return pixels_to_image(pixels).to(intermediate_device())


class TokenPreview:
    """Sampler previews: the first image's decided tokens decoded, undecided patches gray, a few times per run."""

    def __init__(self, vq: VQHandle, total_steps: int) -> None:
        self.vq = vq
        self.total = total_steps
        self.every = max(1, -(-total_steps // PREVIEWS_PER_RUN))
        self.step = 0

    def __call__(self, tokens: torch.Tensor, decided: torch.Tensor) -> torch.Tensor | None:
        self.step += 1
        if self.step % self.every and self.step != self.total:
            return None
        with torch.no_grad():
            image = pixels_to_image(tokenizer_model(self.vq).decode_indices(tokens[:1]))  # (1, H, W, 3)
        size = self.vq.config.downsample
        undecided = (~decided).repeat_interleave(size, 0).repeat_interleave(size, 1)  # (H, W)
        return image.masked_fill(undecided[None, :, :, None], UNDECIDED_GRAY)


def check_pairing(model: ARPGHandle, vq: VQHandle) -> None:
    if vq.config.codebook_size != model.config.vocab_size:
        raise ValueError(f"the VQ tokenizer has {vq.config.codebook_size} codes but the ARPG model predicts "
                         f"{model.config.vocab_size}: use the tokenizer the model was trained with (vq_ds16_c2i.pt "
                         "for the released models)")


def batch_of(tokens: ARPGTokens, batch: int) -> KnownTokens:
    if tokens.tokens.shape[0] not in (1, batch):
        raise ValueError(f"the image/tokens batch {tokens.tokens.shape[0]} must be 1 or equal batch_size {batch}")
    if bool(tokens.known.all()):
        raise ValueError("nothing to generate: the mask marks no token to regenerate (white = regenerate)")
    return KnownTokens.from_grid(tokens.tokens.expand(batch, -1, -1), tokens.known)


def load_wrapped(folder: str, name: str, dtype: str, loader: Callable, *, auto: torch.dtype | None = None
                 ) -> tuple[object, object, str]:
    """Find ``name`` in ``models/<folder>``, load it in the chosen dtype with ComfyUI's casting ops and wrap it for
    the memory manager; returns (patcher, config, where the config came from). ``auto`` overrides ComfyUI's choice."""
    plan = plan_load(folder, name, dtype, family=folder, auto=auto)
    model, source = loader(plan.path, **plan.build_options)
    return wrap_module(model, load_device=plan.device), model.config, source


class FlowARARPGLoader:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = (
        "Load an ARPG checkpoint (arpg_300m.pt / arpg_700m.pt / arpg_1b.pt of hp-l33/ARPG) from models/arpg. The "
        "size (L, XL, XXL) is recognised from the weights; a <checkpoint>.json beside the file configures others."
    )
    RETURN_TYPES = ("ARPG_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The ARPG transformer (class-to-image over VQ-16 tokens).",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "ckpt_name": (folders.list_files("arpg"), {"tooltip": "arpg_*.pt in models/arpg."}),
                "dtype": (list(DTYPE_CHOICES), {
                    "default": "auto",
                    "tooltip": "Weight dtype. auto follows ComfyUI (bf16/fp16 on GPU, fp32 on CPU); the official "
                               "sampler runs bf16."}),
            }
        }

    def load(self, ckpt_name: str, dtype: str) -> tuple[ARPGHandle]:
        return (ARPGHandle(*load_wrapped("arpg", ckpt_name, dtype, load_arpg)),)


class FlowARVQTokenizerLoader:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = (
        "Load LlamaGen's VQ-16 image tokenizer (vq_ds16_c2i.pt of FoundationVision/LlamaGen) from models/vq: it turns "
        "ARPG's tokens into images and images into tokens for editing."
    )
    RETURN_TYPES = ("VQ_TOKENIZER",)
    RETURN_NAMES = ("vq",)
    OUTPUT_TOOLTIPS = ("The VQ tokenizer (encoder, codebook, decoder).",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "vq_name": (folders.list_files("vq"), {"tooltip": "vq_ds16_c2i.pt in models/vq."}),
                "dtype": (list(DTYPE_CHOICES), {
                    "default": "auto",
                    "tooltip": "Weight dtype. auto is fp32, as the official sampler decodes (the tokenizer is "
                               "small)."}),
            }
        }

    def load(self, vq_name: str, dtype: str) -> tuple[VQHandle]:
        return (VQHandle(*load_wrapped("vq", vq_name, dtype, load_vq, auto=torch.float32)),)


class FlowARVQEncode:
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    DESCRIPTION = (
        "Turn an image into VQ tokens (one per 16x16 pixels). With a mask, the tokens under it (white) are marked "
        "unknown, so the ARPG Sampler regenerates them and keeps the rest."
    )
    RETURN_TYPES = ("ARPG_TOKENS",)
    RETURN_NAMES = ("tokens",)
    OUTPUT_TOOLTIPS = ("Token grid of the image and which positions are known.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "vq": ("VQ_TOKENIZER", {"tooltip": "From the VQ Tokenizer Loader."}),
                "image": ("IMAGE", {"tooltip": "Sides must be multiples of 16 pixels."}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": "Same size as the image; white (1) = regenerate this area."}),
            },
        }

    def encode(self, vq: VQHandle, image: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[ARPGTokens]:
        return (encode_image(vq, image, mask),)


class FlowARVQDecode:
    CATEGORY = CATEGORY
    FUNCTION = "decode"
    DESCRIPTION = "Turn a VQ token grid back into an image (16x16 pixels per token)."
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The decoded images.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "vq": ("VQ_TOKENIZER", {"tooltip": "The tokenizer the tokens were made with."}),
                "tokens": ("ARPG_TOKENS", {"tooltip": "From VQ Encode or the ARPG Sampler."}),
            }
        }

    def decode(self, vq: VQHandle, tokens: ARPGTokens) -> tuple[torch.Tensor]:
        return (decode_tokens(vq, tokens.tokens),)


class FlowARARPGSampler:
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    DESCRIPTION = (
        "ARPG randomized parallel decoding: many tokens per step in a random order, then decoded by the VQ tokenizer. "
        "With an image and a mask (white = regenerate) it inpaints or outpaints zero-shot, keeping the other tokens; "
        "an image larger than the model's 256 px expands the resolution."
    )
    RETURN_TYPES = ("IMAGE", "ARPG_TOKENS")
    RETURN_NAMES = ("image", "tokens")
    OUTPUT_TOOLTIPS = ("Generated images.", "The generated token grid (all positions known).")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        defaults = DecodeSettings()  # the sampler's defaults, the official ``generate`` arguments
        return {
            "required": {
                "model": ("ARPG_MODEL", {"tooltip": "From the ARPG Loader."}),
                "vq": ("VQ_TOKENIZER", {"tooltip": "From the VQ Tokenizer Loader (vq_ds16_c2i.pt)."}),
                "seed": seed_input("Same seed, same images (order and tokens are drawn on the CPU)."),
                "steps": ("INT", {"default": defaults.steps, "min": 1, "max": 4096,
                                  "tooltip": "Decoding steps (64 in the paper; 32 also works). Editing a few tokens uses "
                                             "at most one step per token; ignored by the raster schedule."}),
                "schedule": (list(DECODE_SCHEDULES), {
                    "default": defaults.schedule,
                    "tooltip": "Tokens per step: arccos or cosine (few tokens early, many late), or raster: one "
                               "token per step in reading order (the slow sequential baseline)."}),
                "cfg": ("FLOAT", {"default": defaults.guidance, "min": 0.0, "max": 30.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "Guidance scale (released models: 4.5-7.5); 1 turns guidance off."}),
                "cfg_schedule": (list(CFG_SCHEDULES), {
                    "default": defaults.cfg_schedule,
                    "tooltip": "linear: from 1 up to cfg as tokens are decided (official default); constant: cfg "
                               "at every step."}),
                "temperature": ("FLOAT", {"default": defaults.temperature, "min": 0.0, "max": 5.0, "step": 0.01,
                                          "tooltip": "Softmax temperature (1 = official)."}),
                "top_k": ("INT", {"default": defaults.top_k, "min": 0, "max": 65536,
                                  "tooltip": "Keep only the k most likely tokens (0 = off, the official setting)."}),
                "top_p": ("FLOAT", {"default": defaults.top_p, "min": 0.01, "max": 1.0, "step": 0.01,
                                    "tooltip": "Nucleus sampling: keep the most likely tokens up to this probability "
                                               "mass (1 = off, the official setting)."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Images per run."}),
                "class_index": ("INT", {"default": 207, "min": 0, "max": 9999,
                                        "tooltip": "ImageNet class (see ImageNet Class)."}),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "Image to edit (sides multiples of 16); needs a mask."}),
                "mask": ("MASK", {"tooltip": "Same size as the image; white (1) = regenerate."}),
                "tokens": ("ARPG_TOKENS", {"tooltip": "Instead of image + mask: tokens from VQ Encode; the unknown "
                                                      "positions are generated."}),
            },
        }

    def sample(self, model: ARPGHandle, vq: VQHandle, seed: int, steps: int, schedule: str, cfg: float,
               cfg_schedule: str, temperature: float, top_k: int, top_p: float, batch_size: int, class_index: int,
               image: torch.Tensor | None = None, mask: torch.Tensor | None = None, tokens: ARPGTokens | None = None,
               ) -> tuple[torch.Tensor, ARPGTokens]:
        config = model.config
        check_pairing(model, vq)
        labels = torch.full((batch_size,), class_index, dtype=torch.long)
        check_labels(labels, config.num_classes)
        edited = self._edited_tokens(vq, image, mask, tokens)
        known = batch_of(edited, batch_size) if edited is not None else None
        grid = tuple(edited.known.shape) if edited is not None else (config.grid_size, config.grid_size)
        unknown = int((~edited.known).sum()) if edited is not None else grid[0] * grid[1]
        if known is not None:
            steps = min(steps, max(unknown, 1))  # a small edit has fewer tokens than steps: one per step at most
        settings = DecodeSettings(steps=steps, schedule=schedule, guidance=cfg, cfg_schedule=cfg_schedule,
                                  temperature=temperature, top_k=top_k, top_p=top_p)
        settings.check(config.vocab_size)
        total = unknown if schedule == "raster" else steps

        load_models([model.patcher, vq.patcher])
        progress = Progress(total, label="ARPG")
        generated = sample_arpg(
            model.patcher.model, labels, grid=grid, settings=settings, draws=SeededARPGNoise(seed),
            device=model.patcher.load_device, known=known, callback=progress,
            preview=TokenPreview(vq, total) if host.AVAILABLE else None,
        ).to(intermediate_device())
        image_out = decode_tokens(vq, generated)
        return image_out, ARPGTokens(generated, torch.ones(grid, dtype=torch.bool))

    @staticmethod
    def _edited_tokens(vq: VQHandle, image: torch.Tensor | None, mask: torch.Tensor | None,
                       tokens: ARPGTokens | None) -> ARPGTokens | None:
        if tokens is not None and (image is not None or mask is not None):
            raise ValueError("connect either tokens or an image with a mask, not both")
        if image is None and mask is not None:
            raise ValueError("the mask needs the image it belongs to: connect the image too")
        if image is not None and mask is None:
            raise ValueError("editing an image needs a mask marking what to regenerate (white = regenerate)")
        if image is not None:
            tokens = encode_image(vq, image, mask)
        return tokens


NODE_CLASS_MAPPINGS = {
    "FlowARARPGLoader": FlowARARPGLoader,
    "FlowARVQTokenizerLoader": FlowARVQTokenizerLoader,
    "FlowARVQEncode": FlowARVQEncode,
    "FlowARVQDecode": FlowARVQDecode,
    "FlowARARPGSampler": FlowARARPGSampler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FlowARARPGLoader": "ARPG Loader (FlowAR)",
    "FlowARVQTokenizerLoader": "VQ Tokenizer Loader (FlowAR)",
    "FlowARVQEncode": "VQ Encode (FlowAR)",
    "FlowARVQDecode": "VQ Decode (FlowAR)",
    "FlowARARPGSampler": "ARPG Sampler (FlowAR)",
}
