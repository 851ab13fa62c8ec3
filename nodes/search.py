"""Flow search on ComfyUI's own flow MODELs: a ``SAMPLER`` for SamplerCustomAdvanced and a one-node form.

The search (``samplers/flow_search/``) sees the guided ComfyUI denoiser: every call of ``model(x, sigma)`` inside a
sampler function returns the x0 prediction of a ``CONST`` (flow) model with whatever guider (CFGGuider, BasicGuider,
DualCFGGuider) and stateless patches the graph set up, so searches work for FLUX, SD3 and any flow model. Rewards
score VAE-decoded x0 predictions.

How the SIGMAS input is used: only its first value matters. ``sigmas[0] == 1`` (text-to-image) starts every particle
from fresh noise (the latent's own noise for particle 0); ``sigmas[0] < 1`` (image-to-image / denoise < 1) starts all
particles from the given noisy latent at that sigma. The search then runs on its own time grid, ``steps`` steps from
there (the paper's VP-SDE grid ``r_k = sqrt(1 - (k/M)^2)`` mapped to flow sigmas for the VP interpolant, evenly
spaced flow sigmas for the linear one), and finishes at sigma 0.

Refused with a clear error: models whose sampling is not flow/``CONST`` (eps/v-prediction SD1.x/SDXL), inpainting
noise masks (the search would have to re-impose the known region at every particle and proposal), and patches that
keep state across model calls, which a search visits out of order: EasyCache and LazyCache (they reuse outputs of
the previous step) and Adaptive Projected Guidance (its momentum is a running average over calls).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch

from ..samplers.common import Trace
from ..samplers.flow_search.interpolants import INTERPOLANTS
from ..samplers.flow_search.noise import SeededFlowSearchNoise
from ..samplers.flow_search.run import run_search
from ..samplers.flow_search.sde import DEFAULT_DIFFUSION_NORM
from ..samplers.flow_search.settings import FINISHES, METHODS, SearchSettings, search_plan
from ..samplers.pixels import pixels_to_image
from .common import seed_input
from .rewards import Reward
from .runtime import host
from .runtime.messages import SEARCH_TRACE_EVENT, progress_text, send_event
from .runtime.patcher import load_models

CATEGORY = "FlowAR/Search"
STATEFUL_WRAPPERS = ("easycache", "lazycache")
STATEFUL_MODULES = ("nodes_apg",)


def stateful_patches(model_options: dict) -> list[str]:
    """Names of known patches in ``model_options`` that keep state across model calls."""
    wrappers = model_options.get("transformer_options", {}).get("wrappers", {})
    found = {key for by_key in wrappers.values() for key in by_key if key in STATEFUL_WRAPPERS}
    for hook in ("sampler_pre_cfg_function", "sampler_post_cfg_function"):
        for function in model_options.get(hook, []):
            module = getattr(function, "__module__", "") or ""
            found |= {name for name in STATEFUL_MODULES if module.endswith(name)}
    return sorted(found)


def check_searchable(model_sampling: object, extra_args: dict) -> None:
    """Raise ``ValueError`` unless the search can run on this model and these sampling options."""
    if host.AVAILABLE and not isinstance(model_sampling, host.model_sampling.CONST):
        raise ValueError(f"flow search needs a flow model (CONST sampling: FLUX, SD3, AuraFlow, ...); this model uses "
                         f"{type(model_sampling).__name__}")
    if extra_args.get("denoise_mask") is not None:
        raise ValueError("flow search does not support inpainting noise masks (Set Latent Noise Mask / inpaint "
                         "conditioning): remove the mask")
    stateful = stateful_patches(extra_args.get("model_options", {}))
    if stateful:
        raise ValueError(f"flow search calls the model out of order, which the stateful patches {stateful} do not "
                         "allow: remove them from the model")


@dataclass
class SearchSampler:
    """The sampler function ``KSAMPLER`` calls (k-diffusion signature); keeps the traces of its last run."""

    settings: SearchSettings
    reward: Reward
    vae: object | None = None  # comfy.sd.VAE; None: the latent is an RGB image in [-1, 1] (pixel-space models)
    node_id: str | None = None
    traces: list[Trace] = field(default_factory=list)

    def images(self, base_model: object, x0: torch.Tensor) -> torch.Tensor:
        """x0 predictions in model space -> IMAGE ``[N, H, W, C]`` 0..1 for the reward."""
        latent = base_model.process_latent_out(x0)
        if self.vae is None:
            if latent.shape[1] != 3:
                raise ValueError(f"without a VAE the latent must be an RGB image, it has {latent.shape[1]} channels: "
                                 "connect the model's VAE")
            return pixels_to_image(latent.float())
        images = self.vae.decode(latent)
        return images.reshape(-1, *images.shape[-3:])  # video VAEs return [B, T, H, W, C]

    def __call__(self, model, x: torch.Tensor, sigmas: torch.Tensor, extra_args: dict | None = None,
                 callback=None, disable=None) -> torch.Tensor:
        extra_args = dict(extra_args or {})
        guider = model.inner_model
        base_model = guider.inner_model
        check_searchable(base_model.model_sampling, extra_args)
        sigma_max = min(float(sigmas[0]), 1.0)  # flow sigmas never exceed 1; guard against rounding above it
        search_plan(self.settings, sigma_max)  # budget errors before any model call
        load_models([guider.model_patcher, *([self.vae.patcher] if self.vae is not None else [])])
        total_steps = len(sigmas) - 1

        def denoise(latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            return model(latents, sigma.to(latents), **extra_args)

        def reward(x0: torch.Tensor) -> torch.Tensor:
            return self.reward.score(self.images(base_model, x0))

        seed = int(extra_args.get("seed") or 0)
        self.traces = []
        outputs = []
        for index in range(x.shape[0]):
            trace = Trace()
            self.traces.append(trace)

            def report(nfe: int, max_nfe: int, preview: torch.Tensor | None, item: int = index,
                       trace: Trace = trace) -> None:
                best = trace.rows[-1].get("best") if trace.rows else None
                text = f"{self.settings.method}: {nfe}/{max_nfe} NFE" + (f", best reward {best:.4g}" if best is not None
                                                                           else "")
                progress_text(text + (f" (image {item + 1}/{x.shape[0]})" if x.shape[0] > 1 else ""), self.node_id)
                if trace.rows:
                    send_event(SEARCH_TRACE_EVENT, {"node": self.node_id, "item": item, "row": trace.rows[-1]})
                if callback is not None and preview is not None:
                    step = min(total_steps - 1, nfe * total_steps // max(max_nfe, 1))
                    callback({"x": preview, "i": step, "sigma": sigmas[0], "sigma_hat": sigmas[0],
                              "denoised": preview})
                elif host.AVAILABLE:
                    host.model_management.throw_exception_if_processing_interrupted()

            result = run_search(denoise, reward, tuple(x.shape[1:]), self.settings, SeededFlowSearchNoise(seed + index),
                                first_latent=x[index:index + 1], sigma_max=sigma_max, callback=report,
                                trace=trace)
            outputs.append(result.x0.to(x))
        return torch.cat(outputs)

    def trace_text(self) -> str:
        """One JSON line per search step of every image of the last run."""
        return "\n".join(json.dumps({"item": item, **row}) for item, trace in enumerate(self.traces)
                         for row in trace.rows)


def search_inputs() -> dict:
    """The search settings every search node takes (widgets), with the paper's defaults."""
    defaults = SearchSettings()
    return {
        "method": (list(METHODS), {"default": defaults.method, "tooltip": "rbf: Rollover Budget Forcing (the paper's "
                                   "method); best_of_n, smc, svdd, search_over_paths: the baselines."}),
        "max_nfe": ("INT", {"default": defaults.max_nfe, "min": 1, "max": 100000,
                            "tooltip": "Budget of model evaluations (one latent = one NFE) per image."}),
        "steps": ("INT", {"default": defaults.steps, "min": 2, "max": 1000,
                          "tooltip": "Denoising steps of the search grid (the paper: 10)."}),
        "interpolant": (list(INTERPOLANTS), {"default": defaults.interpolant,
                                             "tooltip": "vp: search on the variance-preserving path (the paper's "
                                                        "best); linear: the model's own path."}),
        "diffusion_norm": ("FLOAT", {"default": DEFAULT_DIFFUSION_NORM, "min": 0.0, "max": 20.0, "step": 0.1,
                                     "tooltip": "SDE noise g = norm * r^2 (paper: 3); 0 turns proposals into "
                                                "ODE steps (deterministic)."}),
        "finish": (list(FINISHES), {"default": defaults.finish,
                                    "tooltip": "ode: integrate the chosen particle to sigma 0 (any model); "
                                               "official: return its x0 prediction at the last search step "
                                               "(sharp only for few-step distilled models such as FLUX-schnell)."}),
        "particles": ("INT", {"default": 0, "min": 0, "max": 10000,
                              "tooltip": "best_of_n / smc population (0: as many as the budget allows)."}),
        "chains": ("INT", {"default": defaults.chains, "min": 1, "max": 1000,
                           "tooltip": "rbf / svdd chains, search_over_paths paths."}),
        "init_particles": ("INT", {"default": defaults.init_particles, "min": 1, "max": 10000,
                                   "tooltip": "rbf: initial noises per chain; the best one starts the chain."}),
        "keep_best": ("BOOLEAN", {"default": defaults.keep_best,
                                  "tooltip": "Return the best-rewarded particle of the whole run."}),
        "batch_size": ("INT", {"default": 0, "min": 0, "max": 4096,
                               "tooltip": "Latents per model call (0: all candidates of a step at once)."}),
    }


def settings_from(method: str, max_nfe: int, steps: int, interpolant: str, diffusion_norm: float, finish: str,
                  particles: int, chains: int, init_particles: int, keep_best: bool, batch_size: int
                  ) -> SearchSettings:
    return SearchSettings(method=method, max_nfe=max_nfe, steps=steps, interpolant=interpolant,
                          sde=diffusion_norm > 0, diffusion_norm=diffusion_norm if diffusion_norm > 0 else 1.0,
                          finish=finish, particles=particles, chains=chains, init_particles=init_particles,
                          keep_best=keep_best, batch_size=batch_size)


class FlowARFlowSearchSampler:
    CATEGORY = CATEGORY
    FUNCTION = "build"
    DESCRIPTION = (
        "A SAMPLER for SamplerCustomAdvanced that spends an NFE budget searching for images a REWARD likes "
        "(inference-time scaling for flow models: FLUX, SD3, ...). Only the first sigma of SIGMAS is used (1 = "
        "text-to-image); the search uses its own time grid. Rewards score VAE-decoded x0 predictions."
    )
    RETURN_TYPES = ("SAMPLER",)
    RETURN_NAMES = ("sampler",)
    OUTPUT_TOOLTIPS = ("Use with SamplerCustomAdvanced (any guider, any flow MODEL).",)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {"reward": ("REWARD", {"tooltip": "What to search for (a Reward node)."}),
                         **search_inputs()},
            "optional": {"vae": ("VAE", {"tooltip": "The model's VAE, to decode x0 predictions for the reward "
                                                    "(leave empty only for pixel-space models)."})},
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def build(self, reward: Reward, vae=None, unique_id: str | None = None, **settings) -> tuple[object]:
        sampler = SearchSampler(settings_from(**settings), reward, vae, unique_id)
        require_comfyui()
        return (host.samplers.KSAMPLER(sampler),)


def require_comfyui() -> None:
    if not host.AVAILABLE:
        raise RuntimeError("flow search on a ComfyUI MODEL runs inside ComfyUI (comfy.samplers)")


class FlowARFlowSearch:
    CATEGORY = CATEGORY
    FUNCTION = "search"
    DESCRIPTION = (
        "Text-to-image flow search in one node: guides a flow MODEL with classifier-free guidance and searches an "
        "NFE budget for the images a REWARD likes; also outputs the search trace (one JSON line per step)."
    )
    RETURN_TYPES = ("LATENT", "IMAGE", "STRING")
    RETURN_NAMES = ("latent", "image", "trace")
    OUTPUT_TOOLTIPS = ("The chosen latents.", "The chosen latents decoded.",
                       "Per step: NFE used, candidate rewards, the choice, the best reward so far (JSON lines).")

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "model": ("MODEL", {"tooltip": "A flow model (FLUX, SD3, ...)."}),
                "positive": ("CONDITIONING", {"tooltip": "The prompt's conditioning."}),
                "negative": ("CONDITIONING", {"tooltip": "Negative conditioning (unused when cfg is 1)."}),
                "latent_image": ("LATENT", {"tooltip": "Empty latent: size and batch (one search per image)."}),
                "vae": ("VAE", {"tooltip": "The model's VAE (decodes x0 predictions for the reward)."}),
                "reward": ("REWARD", {"tooltip": "What to search for (a Reward node)."}),
                "seed": seed_input("Seeds the initial noise and every search draw."),
                "cfg": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 30.0, "step": 0.1,
                                  "tooltip": "Classifier-free guidance (1 for FLUX; its guidance is FluxGuidance)."}),
                **search_inputs(),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def search(self, model, positive, negative, latent_image: dict, vae, reward: Reward, seed: int, cfg: float,
               unique_id: str | None = None, **settings) -> tuple[dict, torch.Tensor, str]:
        require_comfyui()
        sampler = SearchSampler(settings_from(**settings), reward, vae, unique_id)
        guider = host.samplers.CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        latent = host.sample.fix_empty_latent_channels(model, latent_image["samples"])
        noise = host.sample.prepare_noise(latent, seed)
        sigmas = torch.tensor([1.0, 0.0])  # text-to-image: only the start (pure noise) matters to the search
        samples = guider.sample(noise, latent, host.samplers.KSAMPLER(sampler), sigmas, seed=seed)
        samples = samples.to(host.model_management.intermediate_device())
        images = vae.decode(samples)
        return {"samples": samples}, images.reshape(-1, *images.shape[-3:]), sampler.trace_text()


NODE_CLASS_MAPPINGS = {"FlowARFlowSearchSampler": FlowARFlowSearchSampler, "FlowARFlowSearch": FlowARFlowSearch}
NODE_DISPLAY_NAME_MAPPINGS = {"FlowARFlowSearchSampler": "Flow Search Sampler (FlowAR)",
                              "FlowARFlowSearch": "Flow Search (FlowAR)"}
