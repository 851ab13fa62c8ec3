"""The pack's built-in models (``builtin/``): listed by the normal loaders beside the user's files, loaded by the
same code as the releases, within the size budget, and sampling what they were trained on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from flowar.models.shapes import CLASS_NAMES
from flowar.nodes.arpg import FlowARARPGLoader, FlowARARPGSampler, FlowARVQEncode, FlowARVQTokenizerLoader
from flowar.nodes.mar import FlowARMARVAELoader
from flowar.nodes.masks import FlowARRegionMask
from flowar.nodes.pixelflow import FlowARFlanT5Loader, FlowARPixelFlowLoader, FlowARPixelFlowSampler
from flowar.tooling.accuracy import score
from flowar.tooling.arpg_eval import PARALLEL
from flowar.train.arpg_vq import codebook_usage
from flowar.train.arpg_vq import reconstruct as reconstruct_vq
from flowar.train.mar_vae import reconstruct
from flowar.train.reconstruction import reconstruction_report
from support.arpg import sampler_inputs
from support.fixtures import REPO_ROOT

BUILTIN = REPO_ROOT / "builtin"
SIZE_BUDGET_MB = 40  # all built-in models of the three built-in issues together
PIXELFLOW = sorted(path.parent.name for path in (BUILTIN / "pixelflow").glob("*/model.safetensors"))
TEXT_ENCODERS = sorted(path.parent.name for path in (BUILTIN / "text_encoders").glob("*/config.json"))


def test_built_in_models_fit_the_size_budget() -> None:
    total = sum(path.stat().st_size for path in BUILTIN.rglob("*") if path.is_file())
    assert PIXELFLOW, "no built-in PixelFlow model is shipped"
    assert total <= SIZE_BUDGET_MB * 2**20, f"builtin/ holds {total / 2**20:.1f} MB"


@pytest.mark.parametrize("name", PIXELFLOW)
def test_built_in_pixelflow_is_listed_and_loads_through_the_loader(name: str, models_dir: Path) -> None:
    entry = f"builtin/{name}/model.safetensors"
    assert (BUILTIN / "pixelflow" / name / "config.yaml").is_file()
    assert entry in FlowARPixelFlowLoader.INPUT_TYPES()["required"]["ckpt_name"][0]
    handle = FlowARPixelFlowLoader().load(entry, "fp32")[0]
    assert handle.source.endswith("config.yaml") and handle.release.resolution == 32


@pytest.mark.parametrize("name", TEXT_ENCODERS)
def test_built_in_text_encoder_is_listed_and_loads_through_the_flan_t5_loader(name: str, models_dir: Path) -> None:
    entry = f"builtin/{name}"
    assert entry in FlowARFlanT5Loader.INPUT_TYPES()["required"]["t5_name"][0]
    encoder = FlowARFlanT5Loader().load(entry, "fp32")[0].encoder
    assert (BUILTIN / "text_encoders" / name / "tokenizer.json").is_file()
    hidden, mask = encoder.encode(["three blue squares"], max_length=16)
    assert mask.sum() == 4 and torch.isfinite(hidden).all()


@pytest.mark.slow
def test_built_in_class_model_draws_its_classes_through_the_sampler_node(models_dir: Path) -> None:
    """A regression guard on the shipped weights and the whole node path (the accuracy itself is measured by
    ``bench/quality.py`` over 240 seeds): most of one image per class, seed 0, is judged right by the analyser."""
    handle = FlowARPixelFlowLoader().load("builtin/shapes-c2i/model.safetensors", "fp32")[0]
    images = torch.cat([FlowARPixelFlowSampler().sample(handle, seed=0, steps=10, cfg=4.0, cfg_schedule="official",
                                                        shift=1.0, solver="euler", size=32, batch_size=1,
                                                        class_index=label)[0] for label in range(len(CLASS_NAMES))])
    assert score(images, torch.arange(len(CLASS_NAMES))).correct >= len(CLASS_NAMES) // 2


MAR_VAE = "builtin/shapes-kl.ckpt"


def test_built_in_mar_vae_is_listed_with_its_config() -> None:
    assert MAR_VAE in FlowARMARVAELoader.INPUT_TYPES()["required"]["vae_name"][0]
    assert (BUILTIN / "vq" / "shapes-kl.json").is_file()


def test_built_in_vae_reconstructions_read_as_the_originals() -> None:
    """A guard on the shipped VAE (the 1,000-image measure is in the issue note): 100 held-out images."""
    vae = FlowARMARVAELoader().load(MAR_VAE, "fp32")[0].vae
    report = reconstruction_report(lambda images: reconstruct(vae, images), 100)
    assert report.read_alike >= 98 and report.psnr > 30


ARPG_VQ = "builtin/shapes-vq.pt"


def test_built_in_vq_is_listed_with_its_config() -> None:
    assert ARPG_VQ in FlowARVQTokenizerLoader.INPUT_TYPES()["required"]["vq_name"][0]
    assert (BUILTIN / "vq" / "shapes-vq.json").is_file()


def test_built_in_vq_reconstructions_read_as_the_originals_and_use_the_codebook() -> None:
    """A guard on the shipped tokenizer (the 1,000-image measure is in the issue note): 100 held-out images."""
    vq = FlowARVQTokenizerLoader().load(ARPG_VQ, "fp32")[0].patcher.model
    report = reconstruction_report(lambda images: reconstruct_vq(vq, images), 100)
    assert report.read_alike >= 98 and report.psnr > 30
    assert codebook_usage(vq, 500).used >= vq.config.codebook_size // 2



ARPG = "builtin/shapes-c2i.pt"


def built_in_arpg() -> tuple:
    return FlowARARPGLoader().load(ARPG, "fp32")[0], FlowARVQTokenizerLoader().load(ARPG_VQ, "fp32")[0]


def sample_built_in_arpg(model, vq, class_index: int, **edit) -> tuple:
    """The ARPG Sampler node at the built-in's own settings (``train/arpg_eval.py``: PARALLEL)."""
    return FlowARARPGSampler().sample(model, vq, seed=0, batch_size=1, class_index=class_index,
                                      **sampler_inputs(PARALLEL), **edit)


def test_built_in_arpg_is_listed_with_its_config_and_its_tokenizer_vocabulary() -> None:
    assert ARPG in FlowARARPGLoader.INPUT_TYPES()["required"]["ckpt_name"][0]
    assert (BUILTIN / "arpg" / "shapes-c2i.json").is_file()
    model, vq = built_in_arpg()
    assert model.config.num_classes == len(CLASS_NAMES)
    assert model.config.vocab_size == vq.patcher.model.config.codebook_size


@pytest.mark.slow
def test_built_in_arpg_draws_its_classes_through_the_sampler_node(models_dir: Path) -> None:
    """A regression guard on the shipped weights and the node path (the accuracy itself is measured by
    ``bench/quality.py`` over 240 seeds): most of one image per class, seed 0, is judged right by the analyser."""
    model, vq = built_in_arpg()
    images = torch.cat([sample_built_in_arpg(model, vq, label)[0] for label in range(len(CLASS_NAMES))])
    assert score(images, torch.arange(len(CLASS_NAMES))).correct >= len(CLASS_NAMES) // 2


@pytest.mark.parametrize("region,amount,regenerated", [("centre", 0.5, 16), ("border", 0.25, 28)])
def test_built_in_arpg_edits_keep_the_tokens_outside_the_region_mask(region: str, amount: float,
                                                                     regenerated: int) -> None:
    """The inpainting / outpainting workflows' path: a generated blue square, a Region Mask over its centre (or
    border band), and the sampler regenerating only the tokens under the mask (4x4 of 8x8, or the ring of 28)."""
    model, vq = built_in_arpg()
    image = sample_built_in_arpg(model, vq, 6)[0]
    mask = FlowARRegionMask().make(image, region, amount)[0]
    original = FlowARVQEncode().encode(vq, image, mask)[0]
    completed = sample_built_in_arpg(model, vq, 6, image=image, mask=mask)[1].tokens
    assert int((~original.known).sum()) == regenerated
    assert torch.equal(completed[:, original.known], original.tokens[:, original.known])
