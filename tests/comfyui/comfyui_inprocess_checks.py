"""Checks of the runtime bridge inside a real ComfyUI, run by ``test_comfyui_real.py`` with ComfyUI's Python.

Usage: ``$COMFYUI_PYTHON tests/comfyui/comfyui_inprocess_checks.py`` with ``COMFYUI_DIR`` set. Prints one line per check
and exits non-zero on the first failure. Not collected by pytest (it needs ``comfy`` importable).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS_DIR = REPO_ROOT / "tests"
sys.path.insert(0, os.environ["COMFYUI_DIR"])  # ComfyUI's own modules (comfy, folder_paths, ...)
from comfy.cli_args import args  # noqa: E402

args.cpu = True  # before comfy.model_management is imported

import comfy.model_management as mm  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.patcher_extension  # noqa: E402
import comfy.ops  # noqa: E402
import folder_paths  # noqa: E402
import torch  # noqa: E402


def load_as_custom_node():
    """The pack loaded as ComfyUI loads a custom node: its ``__init__.py`` by file path, under a name of its own."""
    spec = importlib.util.spec_from_file_location(
        "flowar_in_comfy", REPO_ROOT / "__init__.py", submodule_search_locations=[str(REPO_ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["flowar_in_comfy"] = module
    spec.loader.exec_module(module)
    return module


def load_test_support():
    """The tests' builder package ``tests/support`` registered as ``support`` by file path (as pytest's
    ``pythonpath = ["tests"]`` provides it), without putting the tests folder on ``sys.path``."""
    if "support" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "support", TESTS_DIR / "support" / "__init__.py", submodule_search_locations=[str(TESTS_DIR / "support")]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["support"] = module
        spec.loader.exec_module(module)
    return sys.modules["support"]


def check(name: str, condition: bool, detail: object = "") -> None:
    print(("ok   " if condition else "FAIL ") + name + (f": {detail}" if detail and not condition else ""))
    if not condition:
        sys.exit(1)


def check_interrupted(name: str, run: Callable[[], object]) -> None:
    """``run`` with ComfyUI's interrupt flag set must raise its InterruptProcessingException (the flag is cleared
    afterwards, whatever happens)."""
    mm.interrupt_current_processing(True)
    try:
        run()
        check(name, False)
    except mm.InterruptProcessingException:
        check(name, True)
    finally:
        mm.interrupt_current_processing(False)


def main() -> None:
    pack = load_as_custom_node()
    runtime = sys.modules["flowar_in_comfy.nodes.runtime"]
    check("bridge sees ComfyUI", runtime.host.AVAILABLE)
    check("nodes registered", "FlowARImageNetClass" in pack.NODE_CLASS_MAPPINGS)

    for folder in runtime.MODEL_FOLDERS:
        paths, extensions = folder_paths.folder_names_and_paths[folder]
        check(f"folder {folder} registered with extension filter",
              os.path.join(folder_paths.models_dir, folder) in paths and ".safetensors" in extensions)

    with tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp) / "arpg"
        extra.mkdir()
        (extra / "arpg_300m.pt").write_bytes(b"")
        (extra / "notes.txt").write_text("not a model")
        folder_paths.add_model_folder_path("arpg", str(extra))
        runtime.register_model_folders()  # again: must keep the added path and the filter
        paths, extensions = folder_paths.folder_names_and_paths["arpg"]
        check("re-registration keeps extra_model_paths entries", str(extra) in paths and ".pt" in extensions)
        folder_paths.filename_list_cache.clear()
        listed = runtime.list_files("arpg")
        check("files listed through folder_paths", "arpg_300m.pt" in listed and "notes.txt" not in listed, listed)
        check("file resolved", runtime.resolve("arpg", "arpg_300m.pt", where_to_get="-") == extra / "arpg_300m.pt")
        try:
            runtime.resolve("arpg", "arpg_1b.pt", where_to_get="hp-l33/ARPG")
            check("missing file raises", False)
        except runtime.ModelFileNotFound as err:
            check("missing file names every folder searched", str(extra) in str(err) and "hp-l33/ARPG" in str(err))

    device = runtime.compute_device()
    check("compute device is ComfyUI's", device == mm.get_torch_device())
    check("auto dtype on CPU is float32", runtime.choose_dtype("auto", device) == torch.float32)
    ops, compute = runtime.layer_operations(torch.float32, device)
    check("ComfyUI layer operations", ops in (comfy.ops.manual_cast, comfy.ops.disable_weight_init), ops)

    module = torch.nn.Sequential(ops.Linear(8, 8), ops.LayerNorm(8))
    for p in module.parameters():
        torch.nn.init.normal_(p)
    wrapped = runtime.wrap_module(module)
    check("wrapped in ModelPatcher", isinstance(wrapped, comfy.model_patcher.ModelPatcher))
    runtime.load_models([wrapped])
    check("loaded through model_management", any(m.model is wrapped for m in mm.current_loaded_models))
    out = wrapped.model(torch.randn(2, 8, device=wrapped.load_device))
    check("loaded module runs", out.shape == (2, 8) and torch.isfinite(out).all())

    progress = runtime.Progress(4, node_id="7")
    progress(1, 4, torch.rand(1, 16, 16, 3))
    check_interrupted("interrupt honoured", lambda: progress(2, 4))
    check_pixelflow_nodes(pack)
    check_flan_t5_with_comfy_tokenizer(pack)
    check_mar_nodes(pack)
    check_flow_search_sampler(pack)
    check_reward_nodes(pack)
    check_arpg_nodes(pack)
    print("all in-process checks passed")


def check_pixelflow_nodes(pack) -> None:
    """A tiny PixelFlow checkpoint in the release layout through the loader and sampler nodes inside ComfyUI."""
    pixelflow = sys.modules["flowar_in_comfy.models.pixelflow"]
    params = {"num_attention_heads": 2, "attention_head_dim": 8, "depth": 1, "patch_size": 2, "num_classes": 10}
    torch.manual_seed(0)
    model = pixelflow.PixelFlowModel(pixelflow.PixelFlowConfig(**params))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    with tempfile.TemporaryDirectory() as tmp:
        release = Path(tmp) / "tiny_release"
        release.mkdir()
        torch.save(model.state_dict(), release / "model.pt")
        (release / "config.yaml").write_text(
            "model:\n  params: {" + ", ".join(f"{k}: {v}" for k, v in params.items()) + "}\n"
            "scheduler:\n  num_train_timesteps: 1000\n  num_stages: 4\n")
        folder_paths.add_model_folder_path("pixelflow", tmp)
        folder_paths.filename_list_cache.clear()
        loader = pack.NODE_CLASS_MAPPINGS["FlowARPixelFlowLoader"]
        names = loader.INPUT_TYPES()["required"]["ckpt_name"][0]
        check("PixelFlow checkpoint listed", "tiny_release/model.pt" in names, names)
        handle = loader().load("tiny_release/model.pt", "fp16")[0]
        check("PixelFlow wrapped in ModelPatcher", isinstance(handle.patcher, comfy.model_patcher.ModelPatcher))
        block = handle.patcher.model.transformer_blocks[0].attn1.q_proj
        check("fp16 weights with ComfyUI casting ops", block.weight.dtype == torch.float16
              and isinstance(block, (comfy.ops.manual_cast.Linear, comfy.ops.disable_weight_init.Linear)), block)
        sampler = pack.NODE_CLASS_MAPPINGS["FlowARPixelFlowSampler"]()
        settings = {"seed": 5, "steps": 2, "cfg": 3.0, "cfg_schedule": "official", "shift": 1.0, "solver": "euler",
                    "size": 16, "batch_size": 2, "class_index": 3}
        image = sampler.sample(handle, **settings)[0]
        check("PixelFlow sampler gives an IMAGE", image.shape == (2, 16, 16, 3) and 0 <= image.min() <= image.max() <= 1)
        check("loaded through model_management",
              any(m.model is handle.patcher for m in mm.current_loaded_models))
        check("same seed, same image", torch.equal(image, sampler.sample(handle, **settings)[0]))
        check_interrupted("PixelFlow sampler honours interrupts", lambda: sampler.sample(handle, **settings))


def check_flan_t5_with_comfy_tokenizer(pack) -> None:
    """A single encoder file (Flan-T5 vocabulary, tiny width) uses the T5 tokenizer ComfyUI ships."""
    from safetensors.torch import save_file
    from transformers import T5Config, T5EncoderModel

    config = T5Config(vocab_size=32128, d_model=32, d_kv=8, num_heads=4, num_layers=1, d_ff=64,
                      feed_forward_proj="gated-gelu", is_encoder_decoder=False)
    torch.manual_seed(0)
    encoder = T5EncoderModel(config)
    with tempfile.TemporaryDirectory() as tmp:
        weights = {name: value.clone() for name, value in encoder.state_dict().items() if name != "shared.weight"}
        save_file(weights, str(Path(tmp) / "tiny_flan_encoder.safetensors"))
        folder_paths.add_model_folder_path("text_encoders", tmp)
        folder_paths.filename_list_cache.clear()
        loader = pack.NODE_CLASS_MAPPINGS["FlowARFlanT5Loader"]
        check("T5 file listed", "tiny_flan_encoder.safetensors" in loader.INPUT_TYPES()["required"]["t5_name"][0])
        handle = loader().load("tiny_flan_encoder.safetensors", "fp32")[0]
        check("T5 wrapped in ModelPatcher", isinstance(handle.patcher, comfy.model_patcher.ModelPatcher))
        encode = pack.NODE_CLASS_MAPPINGS["FlowARPixelFlowTextEncode"]()
        condition = encode.encode(handle, "a photo of a cat", "", 512)[0]
        check("ComfyUI's T5 tokenizer used: 512 tokens, mask on the real ones",
              condition.context.shape == (1, 512, 32) and condition.mask.sum().item() == 8  # ▁ a ▁photo ▁of ▁ a ▁cat </s>
              and condition.negative_mask.sum().item() == 1, (condition.context.shape, condition.mask.sum()))


def check_mar_nodes(pack) -> None:
    """Tiny MAR + KL-16 checkpoints in the official containers through the MAR nodes inside ComfyUI."""
    mar = sys.modules["flowar_in_comfy.models.mar"]
    kl16 = sys.modules["flowar_in_comfy.models.kl16"]
    params = {"encoder_embed_dim": 16, "encoder_depth": 1, "encoder_num_heads": 2, "decoder_embed_dim": 16,
              "decoder_depth": 1, "decoder_num_heads": 2, "diffloss_d": 1, "diffloss_w": 16, "img_size": 64,
              "class_num": 10, "buffer_size": 2}
    vae_params = {"embed_dim": 16, "ch_mult": [1, 1, 1, 1, 1], "ch": 32, "num_res_blocks": 1, "resolution": 64}
    torch.manual_seed(0)
    model = mar.MAR(mar.MARConfig.from_params(params))
    vae = kl16.AutoencoderKL(kl16.KL16Config.from_params(vae_params))
    for p in [*model.parameters(), *vae.parameters()]:
        torch.nn.init.normal_(p, std=0.2)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "mar").mkdir()
        (Path(tmp) / "vq").mkdir()
        torch.save({"model": model.state_dict(), "model_ema": model.state_dict(), "epoch": 1},
                   Path(tmp) / "mar" / "tiny_mar.pth")
        (Path(tmp) / "mar" / "tiny_mar.json").write_text(json.dumps(params))
        torch.save({"model": vae.state_dict()}, Path(tmp) / "vq" / "tiny_kl16.ckpt")
        (Path(tmp) / "vq" / "tiny_kl16.json").write_text(json.dumps(vae_params))
        folder_paths.add_model_folder_path("mar", str(Path(tmp) / "mar"))
        folder_paths.add_model_folder_path("vq", str(Path(tmp) / "vq"))
        folder_paths.filename_list_cache.clear()
        nodes = pack.NODE_CLASS_MAPPINGS
        handle = nodes["FlowARMARLoader"]().load("tiny_mar.pth", "model_ema", "bf16")[0]
        vae_handle = nodes["FlowARMARVAELoader"]().load("tiny_kl16.ckpt", "fp32")[0]
        check("MAR wrapped in ModelPatcher", isinstance(handle.patcher, comfy.model_patcher.ModelPatcher))
        settings = {"seed": 1, "num_iter": 3, "cfg": 2.0, "cfg_schedule": "linear", "temperature": 1.0,
                    "diffusion_steps": 3, "batch_size": 2, "class_index": 4}
        image, latent = nodes["FlowARMARSampler"]().sample(handle, vae_handle, **settings)
        check("MAR sampler gives an IMAGE (bf16 weights, ComfyUI casting ops)",
              image.shape == (2, 64, 64, 3) and torch.isfinite(image).all(), image.shape)
        check("MAR model and VAE loaded together", {id(handle.patcher), id(vae_handle.patcher)}
              <= {id(m.model) for m in mm.current_loaded_models})
        decoded = nodes["FlowARMARVAEDecode"]().decode(vae_handle, latent)[0]
        check("MAR VAE decode matches the sampler's image", torch.allclose(decoded, image, atol=1e-5))
        check_interrupted("MAR sampler honours interrupts",
                          lambda: nodes["FlowARMARSampler"]().sample(handle, vae_handle, **settings))


def check_arpg_nodes(pack) -> None:
    """Tiny ARPG + VQ checkpoints in the official containers through the ARPG nodes inside ComfyUI: casting ops,
    ModelPatcher, sampling with previews, inpainting, and an interrupt that leaves no KV cache allocated."""
    arpg = sys.modules["flowar_in_comfy.models.arpg"]
    vq16 = sys.modules["flowar_in_comfy.models.vq16"]
    params = {"dim": 32, "n_layer": 2, "n_head": 2, "vocab_size": 16, "num_classes": 10, "block_size": 16,
              "multiple_of": 16}
    vq_params = {"codebook_size": 16, "codebook_embed_dim": 4, "encoder_ch_mult": [1, 1, 1, 1, 1],
                 "decoder_ch_mult": [1, 1, 1, 1, 1], "z_channels": 8, "ch": 32, "num_res_blocks": 1}
    torch.manual_seed(0)
    model = arpg.ARPGTransformer(arpg.ARPGConfig.from_model_args(params))
    vq = vq16.VQModel(vq16.VQConfig.from_params(vq_params))
    for p in [*model.parameters(), *vq.parameters()]:
        torch.nn.init.normal_(p, std=0.3)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "arpg").mkdir()
        (Path(tmp) / "vq").mkdir()
        torch.save({"state_dict": model.state_dict()}, Path(tmp) / "arpg" / "tiny_arpg.pt")
        (Path(tmp) / "arpg" / "tiny_arpg.json").write_text(json.dumps(params))
        torch.save({"model": vq.state_dict()}, Path(tmp) / "vq" / "tiny_vq.pt")
        (Path(tmp) / "vq" / "tiny_vq.json").write_text(json.dumps(vq_params))
        folder_paths.add_model_folder_path("arpg", str(Path(tmp) / "arpg"))
        folder_paths.add_model_folder_path("vq", str(Path(tmp) / "vq"))
        folder_paths.filename_list_cache.clear()
        nodes = pack.NODE_CLASS_MAPPINGS
        check("ARPG checkpoint listed",
              "tiny_arpg.pt" in nodes["FlowARARPGLoader"].INPUT_TYPES()["required"]["ckpt_name"][0])
        handle = nodes["FlowARARPGLoader"]().load("tiny_arpg.pt", "fp16")[0]
        vq_handle = nodes["FlowARVQTokenizerLoader"]().load("tiny_vq.pt", "auto")[0]
        check("ARPG and VQ wrapped in ModelPatcher", isinstance(handle.patcher, comfy.model_patcher.ModelPatcher)
              and isinstance(vq_handle.patcher, comfy.model_patcher.ModelPatcher))
        head = handle.patcher.model.head
        check("ARPG fp16 weights with ComfyUI casting ops", head.weight.dtype == torch.float16
              and isinstance(head, (comfy.ops.manual_cast.Linear, comfy.ops.disable_weight_init.Linear)), head)
        sampler = nodes["FlowARARPGSampler"]()
        settings = {"seed": 5, "steps": 4, "schedule": "arccos", "cfg": 3.0, "cfg_schedule": "linear",
                    "temperature": 1.0, "top_k": 0, "top_p": 0.9, "batch_size": 2, "class_index": 3}
        image, tokens = sampler.sample(handle, vq_handle, **settings)
        check("ARPG sampler gives an IMAGE (fp16 weights, previews on)",
              image.shape == (2, 64, 64, 3) and 0 <= image.min() <= image.max() <= 1, image.shape)
        check("ARPG model and tokenizer loaded together", {id(handle.patcher), id(vq_handle.patcher)}
              <= {id(m.model) for m in mm.current_loaded_models})
        check("same seed, same image", torch.equal(image, sampler.sample(handle, vq_handle, **settings)[0]))
        mask = torch.zeros(1, 64, 64)
        mask[:, 16:48, 16:48] = 1.0
        encoded = nodes["FlowARVQEncode"]().encode(vq_handle, image[:1], mask)[0]
        edited = sampler.sample(handle, vq_handle, **settings, image=image[:1], mask=mask)[1]
        check("ARPG inpainting keeps the known tokens",
              torch.equal(edited.tokens[:, encoded.known], encoded.tokens.expand(2, -1, -1)[:, encoded.known]))
        caches, factory = [], handle.patcher.model.new_kv_cache
        handle.patcher.model.new_kv_cache = lambda *a, **k: caches.append(factory(*a, **k)) or caches[-1]
        try:
            check_interrupted("ARPG sampler honours interrupts", lambda: sampler.sample(handle, vq_handle, **settings))
        finally:
            del handle.patcher.model.new_kv_cache
        check("interrupted ARPG run released its KV cache", len(caches) == 1 and not caches[0].allocated, caches)


def check_flow_search_sampler(pack) -> None:
    """The search SAMPLER through SamplerCustomAdvanced on a tiny pixel-space flow MODEL, and its refusals."""
    import comfy.latent_formats
    import comfy.model_base
    import comfy.samplers
    import comfy.supported_models_base
    from comfy_extras.nodes_custom_sampler import Noise_RandomNoise, SamplerCustomAdvanced

    class TinyVelocity(torch.nn.Module):
        def __init__(self, channels=3, device=None, operations=None, dtype=None, **kw):
            super().__init__()
            self.dtype = torch.float32
            self.proj = torch.nn.Conv2d(channels, channels, 1, device=device)

        def forward(self, x, t, context=None, control=None, transformer_options={}, **kw):
            return self.proj(x) + 0.1 * t.view(-1, 1, 1, 1) / 1000

    class PixelFormat(comfy.latent_formats.LatentFormat):
        latent_channels = 3
        scale_factor = 1.0

    class TinyFlowConfig(comfy.supported_models_base.BASE):
        unet_config = {"channels": 3}
        latent_format = PixelFormat
        sampling_settings = {"shift": 1.0, "multiplier": 1000}
        supported_inference_dtypes = [torch.float32]

    def tiny_model(model_type):
        torch.manual_seed(0)
        base = comfy.model_base.BaseModel(TinyFlowConfig(TinyFlowConfig.unet_config), model_type=model_type,
                                          device=mm.unet_offload_device(), unet_model=TinyVelocity)
        return comfy.model_patcher.ModelPatcher(base, load_device=mm.get_torch_device(),
                                                offload_device=mm.unet_offload_device())

    rewards = sys.modules["flowar_in_comfy.nodes.rewards"]
    scored = []

    def brightness(images):
        scored.append(images.shape[0])
        return images.mean(dim=(1, 2, 3)).float().cpu()

    reward = rewards.Reward("brightness", brightness)
    node = pack.NODE_CLASS_MAPPINGS["FlowARFlowSearchSampler"]()
    settings = {"method": "rbf", "max_nfe": 40, "steps": 4, "interpolant": "vp", "diffusion_norm": 3.0,
                "finish": "ode", "particles": 0, "chains": 2, "init_particles": 3, "keep_best": False,
                "batch_size": 0}
    sampler = node.build(reward, unique_id="12", **settings)[0]
    check("search node gives a KSAMPLER", isinstance(sampler, comfy.samplers.KSAMPLER))
    model = tiny_model(comfy.model_base.ModelType.FLOW)
    cond = [[torch.zeros(1, 1, 8), {}]]
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(cond, cond)
    guider.set_cfg(1.0)
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", 4)
    latent = {"samples": torch.zeros(2, 3, 8, 8)}
    out = SamplerCustomAdvanced.execute(Noise_RandomNoise(3), guider, sampler, sigmas, latent)
    samples = out.result[0]["samples"]
    check("search runs through SamplerCustomAdvanced and returns the chosen latents",
          samples.shape == (2, 3, 8, 8) and torch.isfinite(samples).all() and sum(scored) > 0, samples.shape)
    again = SamplerCustomAdvanced.execute(Noise_RandomNoise(3), guider, sampler, sigmas, latent).result[0]["samples"]
    check("same seed, same search result", torch.equal(samples, again))
    check("trace rows kept per image", len(sampler.sampler_function.traces) == 2
          and len(sampler.sampler_function.trace_text().splitlines()) > 2)

    class PixelVAE:
        """Stands in for a comfy.sd.VAE of a pixel-space model: decode maps [-1, 1] pixels to an IMAGE."""

        def __init__(self):
            self.patcher = comfy.model_patcher.ModelPatcher(torch.nn.Linear(1, 1), load_device=mm.get_torch_device(),
                                                            offload_device=mm.unet_offload_device())

        def decode(self, latent):
            return (latent.movedim(1, -1) / 2 + 0.5).clamp(0, 1)

    one_node = pack.NODE_CLASS_MAPPINGS["FlowARFlowSearch"]()
    result, images, trace_text = one_node.search(model, cond, cond, {"samples": torch.zeros(1, 3, 8, 8)}, PixelVAE(),
                                                 reward, 3, 1.0, unique_id="13", **settings)
    check("one-node search returns LATENT, IMAGE and a trace",
          result["samples"].shape == (1, 3, 8, 8) and images.shape == (1, 8, 8, 3)
          and all(json.loads(line)["item"] == 0 for line in trace_text.splitlines()) and trace_text.count("\n") > 1)

    eps = tiny_model(comfy.model_base.ModelType.EPS)
    eps_guider = comfy.samplers.CFGGuider(eps)
    eps_guider.set_conds(cond, cond)
    eps_guider.set_cfg(1.0)
    try:
        SamplerCustomAdvanced.execute(Noise_RandomNoise(3), eps_guider, sampler, sigmas, latent)
        check("a non-flow MODEL is refused", False)
    except ValueError as err:
        check("a non-flow MODEL is refused", "needs a flow model" in str(err), err)
    masked = {"samples": torch.zeros(1, 3, 8, 8), "noise_mask": torch.ones(1, 1, 8, 8)}
    try:
        SamplerCustomAdvanced.execute(Noise_RandomNoise(3), guider, sampler, sigmas, masked)
        check("an inpainting noise mask is refused", False)
    except ValueError as err:
        check("an inpainting noise mask is refused", "noise mask" in str(err), err)
    cached = model.clone()
    cached.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.OUTER_SAMPLE, "easycache", lambda e, *a, **k: e(*a, **k))
    cached_guider = comfy.samplers.CFGGuider(cached)
    cached_guider.set_conds(cond, cond)
    cached_guider.set_cfg(1.0)
    try:
        SamplerCustomAdvanced.execute(Noise_RandomNoise(3), cached_guider, sampler, sigmas, latent)
        check("a stateful patch (EasyCache) is refused", False)
    except ValueError as err:
        check("a stateful patch (EasyCache) is refused", "easycache" in str(err), err)


def check_reward_nodes(pack) -> None:
    """A tiny CLIP folder in the official layout through the CLIP-score loader and Reward node inside ComfyUI."""
    load_test_support()
    from support.rewards import write_clip_folder

    with tempfile.TemporaryDirectory() as tmp:
        write_clip_folder(Path(tmp) / "tiny-clip")
        folder_paths.add_model_folder_path("rewards", tmp)
        nodes = pack.NODE_CLASS_MAPPINGS
        check("reward folder listed", "tiny-clip" in nodes["FlowARCLIPScoreLoader"].INPUT_TYPES()["required"]
              ["model_name"][0])
        handle = nodes["FlowARCLIPScoreLoader"]().load("tiny-clip", "fp32")[0]
        reward = nodes["FlowARReward"]().make(handle, "a red cat", 4)[0]
        check("reward modules wrapped in ModelPatcher",
              reward.patchers and all(isinstance(p, comfy.model_patcher.ModelPatcher) for p in reward.patchers))
        scores = reward.score(torch.rand(3, 32, 32, 3))
        check("reward scores an IMAGE batch", scores.shape == (3,) and torch.isfinite(scores).all(), str(scores))
        check("reward models loaded through model_management",
              {id(p) for p in reward.patchers} <= {id(m.model) for m in mm.current_loaded_models})


if __name__ == "__main__":
    main()
