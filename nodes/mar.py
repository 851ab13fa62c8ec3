"""MAR nodes: model and KL-16 VAE loaders, the masked-autoregressive sampler (class -> image, inpainting,
outpainting), and VAE encode/decode over the pack's own ``MAR_LATENT`` type.

``MAR_LATENT`` is deliberately not ComfyUI's ``LATENT``: these 16-channel KL-16 latents (scaled by 0.2325) must not
reach an SD3 or FLUX VAE Decode, which would accept a ``LATENT`` of the same shape and produce garbage.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.kl16 import AutoencoderKL
from ..models.mar import MAR, patchify, unpatchify
from ..models.mar_release import WEIGHT_CHOICES, load_kl16, load_mar
from ..samplers.common import KnownTokens, regenerated_tokens
from ..samplers.mar import defaults
from ..samplers.mar.diffusion import diffusion_schedule
from ..samplers.mar.noise import SeededMARNoise
from ..samplers.mar.sample import CFG_SCHEDULES, sample_mar
from ..samplers.pixels import image_to_pixels, pixels_to_image
from .common import plan_load, seed_input
from .runtime import folders
from .runtime.devices import DTYPE_CHOICES, intermediate_device
from .runtime.patcher import load_models, wrap_module
from .runtime.progress import Progress

CATEGORY = "FlowAR/MAR"


@dataclass(frozen=True)
class MARHandle:
    """The ``MAR_MODEL`` payload."""

    patcher: object
    source: str

    @property
    def model(self) -> MAR:
        return self.patcher.model


@dataclass(frozen=True)
class KL16Handle:
    """The ``MAR_VAE`` payload: the wrapped VAE and the dtype it computes in."""

    patcher: object
    compute_dtype: torch.dtype

    @property
    def vae(self) -> AutoencoderKL:
        return self.patcher.model


@dataclass(frozen=True)
class MARLatent:
    """The ``MAR_LATENT`` payload: KL-16 latents ``[B, 16, h, w]`` in MAR's units (x 0.2325) and, for inpainting,
    which token positions are known ``[B, h*w]`` (None: all)."""

    latents: torch.Tensor
    known: torch.Tensor | None = None


def encode_image(vae: KL16Handle, image: torch.Tensor, size: int, batch: int) -> torch.Tensor:
    """IMAGE -> MAR latents ``[batch, C, size/16, size/16]`` (resized to the model's size, batch matched)."""
    pixels = image_to_pixels(image, size, batch).to(vae.patcher.load_device, vae.compute_dtype)
    return vae.vae.encode_tokens(pixels).float()


def decode_latents(vae: KL16Handle, latents: torch.Tensor) -> torch.Tensor:
    """MAR latents -> IMAGE ``[B, H, W, 3]`` in 0..1 on the intermediate device."""
    pixels = vae.vae.decode_tokens(latents.to(vae.patcher.load_device, vae.compute_dtype)).float()
    return pixels_to_image(pixels).to(intermediate_device())


def known_tokens_from_mask(mask: torch.Tensor, image: torch.Tensor, grid: int, batch: int) -> torch.Tensor:
    """MASK ``[B, H, W]`` (1 = regenerate) -> known token positions ``[batch, grid*grid]`` (the rule of
    :func:`regenerated_tokens`)."""
    mask = mask if mask.dim() == 3 else mask[None]
    if mask.shape[0] not in (1, batch):
        raise ValueError(f"mask batch {mask.shape[0]} must be 1 or equal batch_size {batch}")
    regenerate = regenerated_tokens(mask, tuple(image.shape[1:3]), (grid, grid))  # (B, grid, grid)
    return (~regenerate).flatten(1).expand(batch, -1)


class FlowARMARLoader:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = ("Load a MAR checkpoint (checkpoint-last.pth of mar_base / mar_large / mar_huge) from models/mar. "
                   "The official sampler uses the EMA weights; sizes are read from the file.")
    RETURN_TYPES = ("MAR_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The MAR transformer with its diffusion head.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "ckpt_name": (folders.list_files("mar"), {"tooltip": "checkpoint-last.pth in models/mar."}),
                "weights": (list(WEIGHT_CHOICES), {
                    "default": "model_ema", "tooltip": "model_ema as the official sampler; model = raw weights."}),
                "dtype": (list(DTYPE_CHOICES), {
                    "default": "auto", "tooltip": "Weight dtype; auto follows ComfyUI, fp32 is exact."}),
            }
        }

    def load(self, ckpt_name: str, weights: str, dtype: str) -> tuple[MARHandle]:
        plan = plan_load("mar", ckpt_name, dtype, family="mar")
        model, source = load_mar(plan.path, weights=weights, **plan.build_options)
        return (MARHandle(wrap_module(model, load_device=plan.device), source),)


class FlowARMARVAELoader:
    CATEGORY = CATEGORY
    FUNCTION = "load"
    DESCRIPTION = "Load MAR's KL-16 VAE (kl16.ckpt) from models/vq: images <-> 16x16x16 continuous tokens."
    RETURN_TYPES = ("MAR_VAE",)
    RETURN_NAMES = ("vae",)
    OUTPUT_TOOLTIPS = ("The KL-16 autoencoder MAR was trained with.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "vae_name": (folders.list_files("vq"), {"tooltip": "kl16.ckpt in models/vq."}),
                "dtype": (list(DTYPE_CHOICES), {"default": "fp32", "tooltip": "Weight dtype (fp32 is exact)."}),
            }
        }

    def load(self, vae_name: str, dtype: str) -> tuple[KL16Handle]:
        plan = plan_load("vq", vae_name, dtype, family="kl16")
        vae, _ = load_kl16(plan.path, dtype=plan.dtype, operations=plan.operations)
        return (KL16Handle(wrap_module(vae, load_device=plan.device), plan.compute_dtype),)


def check_pair(model: MAR, vae: AutoencoderKL) -> None:
    """The VAE must produce the tokens the model was trained on."""
    config = model.config
    if vae.config.embed_dim != config.vae_embed_dim or vae.config.downsampling != config.vae_stride:
        raise ValueError(f"this VAE makes {vae.config.embed_dim}-channel latents at stride {vae.config.downsampling}, "
                         f"the MAR model expects {config.vae_embed_dim} channels at stride {config.vae_stride}: "
                         "load MAR's kl16.ckpt")


class FlowARMARSampler:
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    DESCRIPTION = (
        "MAR masked-autoregressive sampling: tokens are revealed in a random order over the iterations, each drawn by "
        "the per-token diffusion head. With an image and a mask (white = regenerate) it inpaints or outpaints: "
        "tokens whose patch is unmasked are kept."
    )
    RETURN_TYPES = ("IMAGE", "MAR_LATENT")
    RETURN_NAMES = ("image", "latent")
    OUTPUT_TOOLTIPS = ("Decoded images.", "The generated KL-16 latents (for MAR VAE Decode).")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": ("MAR_MODEL", {"tooltip": "From the MAR Loader."}),
                "vae": ("MAR_VAE", {"tooltip": "From the MAR VAE Loader (kl16.ckpt)."}),
                "seed": seed_input("Drives the random orders and all diffusion noise."),
                "num_iter": ("INT", {"default": defaults.NUM_ITER, "min": 1, "max": 1024,
                                     "tooltip": "Autoregressive iterations (demo 64; paper 256 = one token each)."}),
                "cfg": ("FLOAT", {"default": defaults.CFG, "min": 1.0, "max": 20.0, "step": 0.1, "round": 0.01,
                                  "tooltip": "Guidance (demo 4.0 constant; paper B/L/H 2.9/3.0/3.2 linear); 1 = off."}),
                "cfg_schedule": (list(CFG_SCHEDULES), {
                    "default": defaults.CFG_SCHEDULE, "tooltip": "linear ramps guidance with the revealed fraction."}),
                "temperature": ("FLOAT", {"default": defaults.TEMPERATURE, "min": 0.05, "max": 2.0, "step": 0.01,
                                          "tooltip": "Scales the head's per-step noise (0.95 without guidance)."}),
                "diffusion_steps": ("INT", {"default": defaults.DIFFUSION_STEPS, "min": 1, "max": 1000,
                                            "tooltip": "Respaced DDPM steps of the diffusion head (official 100)."}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Images per run."}),
                "class_index": ("INT", {"default": 207, "min": 0, "max": 9999,
                                        "tooltip": "ImageNet class (see ImageNet Class)."}),
            },
            "optional": {
                "image": ("IMAGE", {"tooltip": "Image to inpaint/outpaint (resized to the model's 256 px)."}),
                "mask": ("MASK", {"tooltip": "White = regenerate; same size as the image."}),
            },
        }

    def sample(self, model: MARHandle, vae: KL16Handle, seed: int, num_iter: int, cfg: float, cfg_schedule: str,
               temperature: float, diffusion_steps: int, batch_size: int, class_index: int,
               image: torch.Tensor | None = None, mask: torch.Tensor | None = None,
               ) -> tuple[torch.Tensor, MARLatent]:
        mar, config = model.model, model.model.config
        check_pair(mar, vae.vae)
        if not 0 <= class_index < config.class_num:
            raise ValueError(f"class_index {class_index} is out of range: this model has classes "
                             f"0..{config.class_num - 1}")
        if (image is None) != (mask is None):
            raise ValueError("inpainting needs both an image and a mask (white = regenerate)")
        schedule = diffusion_schedule(diffusion_steps)
        load_models([model.patcher, vae.patcher])
        device = model.patcher.load_device
        known = None
        with torch.no_grad():
            if image is not None:
                latents = encode_image(vae, image, config.img_size, batch_size)
                known = KnownTokens(patchify(latents, config.patch_size),
                                    known_tokens_from_mask(mask, image, config.grid, batch_size))
            tokens = sample_mar(
                mar, labels=torch.full((batch_size,), class_index, dtype=torch.long), batch=batch_size,
                num_iter=num_iter, cfg=cfg, cfg_schedule=cfg_schedule, temperature=temperature, schedule=schedule,
                noise=SeededMARNoise(seed), device=device, known=known, callback=Progress(num_iter, label="MAR"),
            )
            latents = unpatchify(tokens, config.grid, config.vae_embed_dim, config.patch_size)
            images = decode_latents(vae, latents)
        rest = intermediate_device()
        return images, MARLatent(latents.to(rest), known.known.to(rest) if known is not None else None)


class FlowARMARVAEEncode:
    CATEGORY = CATEGORY
    FUNCTION = "encode"
    DESCRIPTION = "Encode an IMAGE into MAR's KL-16 latents (the posterior mean x 0.2325), resized to size."
    RETURN_TYPES = ("MAR_LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("KL-16 latents in MAR's units.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "vae": ("MAR_VAE", {"tooltip": "From the MAR VAE Loader."}),
                "image": ("IMAGE", {"tooltip": "Images to encode."}),
                "size": ("INT", {"default": defaults.SIZE, "min": 16, "max": 2048, "step": 16,
                                 "tooltip": "Square size to resize to (MAR's models are trained at 256)."}),
            }
        }

    def encode(self, vae: KL16Handle, image: torch.Tensor, size: int) -> tuple[MARLatent]:
        if size % vae.vae.config.downsampling:
            raise ValueError(f"size must be a multiple of {vae.vae.config.downsampling}, got {size}")
        load_models([vae.patcher])
        with torch.no_grad():
            latents = encode_image(vae, image, size, image.shape[0])
        return (MARLatent(latents.to(intermediate_device())),)


class FlowARMARVAEDecode:
    CATEGORY = CATEGORY
    FUNCTION = "decode"
    DESCRIPTION = "Decode MAR latents with the KL-16 VAE into an IMAGE."
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("Decoded images.",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "vae": ("MAR_VAE", {"tooltip": "From the MAR VAE Loader."}),
                "latent": ("MAR_LATENT", {"tooltip": "From the MAR Sampler or MAR VAE Encode."}),
            }
        }

    def decode(self, vae: KL16Handle, latent: MARLatent) -> tuple[torch.Tensor]:
        if latent.latents.shape[1] != vae.vae.config.embed_dim:
            raise ValueError(f"the latent has {latent.latents.shape[1]} channels, this VAE decodes "
                             f"{vae.vae.config.embed_dim}")
        load_models([vae.patcher])
        with torch.no_grad():
            return (decode_latents(vae, latent.latents),)


NODE_CLASS_MAPPINGS = {
    "FlowARMARLoader": FlowARMARLoader,
    "FlowARMARVAELoader": FlowARMARVAELoader,
    "FlowARMARSampler": FlowARMARSampler,
    "FlowARMARVAEEncode": FlowARMARVAEEncode,
    "FlowARMARVAEDecode": FlowARMARVAEDecode,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "FlowARMARLoader": "MAR Loader (FlowAR)",
    "FlowARMARVAELoader": "MAR VAE Loader (FlowAR)",
    "FlowARMARSampler": "MAR Sampler (FlowAR)",
    "FlowARMARVAEEncode": "MAR VAE Encode (FlowAR)",
    "FlowARMARVAEDecode": "MAR VAE Decode (FlowAR)",
}
