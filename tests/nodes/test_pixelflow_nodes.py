"""PixelFlow nodes in-process (standalone bridge): tiny official-layout checkpoints -> loader -> sampler -> IMAGE."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.checkpoints import write_pixelflow
from support.t5 import write_t5_encoder_file, write_t5_folder, write_t5_tokenizer
from support.tiny_pixelflow import C2I, T2I, TINY, load, sample, tiny_state_dict, write_tiny

from flowar.models.checkpoint import CheckpointError
from flowar.models.pixelflow_release import PRESETS, load_pixelflow
from flowar.nodes.pixelflow import (
    FlowARFlanT5Loader,
    FlowARPixelFlowLoader,
    FlowARPixelFlowTextEncode,
    parse_stage_steps,
)
from flowar.nodes.runtime.folders import ModelFileNotFound
from flowar.samplers.pixelflow.guidance import TextCondition

def text_condition(width: int, length: int = 5) -> TextCondition:
    generator = torch.Generator().manual_seed(1)
    mask = torch.ones(1, length, dtype=torch.long)
    mask[:, 3:] = 0
    return TextCondition(torch.randn(1, length, width, generator=generator), mask,
                         torch.randn(1, length, width, generator=generator), torch.ones(1, length, dtype=torch.long))


def test_loader_lists_and_loads_a_release_layout_checkpoint(models_dir: Path) -> None:
    name = write_tiny(models_dir, "tiny_c2i", C2I)
    assert name in FlowARPixelFlowLoader.INPUT_TYPES()["required"]["ckpt_name"][0]
    handle = load(name)
    assert handle.release.num_stages == 4 and handle.release.class_conditional
    assert handle.source.endswith("config.yaml")
    assert handle.patcher.model.transformer_blocks[0].attn1.q_proj.weight.dtype == torch.float32


def test_c2i_sampler_gives_images_and_same_seed_same_image(models_dir: Path) -> None:
    model = load(write_tiny(models_dir, "tiny_c2i", C2I))
    image = sample(model)
    assert image.shape == (2, 16, 16, 3) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0
    assert torch.equal(image, sample(model))
    assert not torch.equal(image, sample(model, seed=4))
    assert not torch.equal(image, sample(model, class_index=5))


def test_batch_rows_differ(models_dir: Path) -> None:
    model = load(write_tiny(models_dir, "tiny_c2i", C2I))
    image = sample(model, batch_size=3)
    assert not torch.equal(image[0], image[1])


def test_t2i_sampler_needs_conditioning_and_uses_it(models_dir: Path) -> None:
    model = load(write_tiny(models_dir, "tiny_t2i", T2I))
    with pytest.raises(ValueError, match="text-to-image: connect a PixelFlow Text Encode"):
        sample(model)
    image = sample(model, conditioning=text_condition(12), cfg_schedule="constant")
    assert image.shape == (2, 16, 16, 3)
    with pytest.raises(ValueError, match="width 7 but the model expects 12"):
        sample(model, conditioning=text_condition(7))


@pytest.mark.slow
def test_sampler_options_run(models_dir: Path) -> None:
    model = load(write_tiny(models_dir, "tiny_c2i", C2I))
    for options in ({"solver": "dopri5", "batch_size": 1}, {"stage_steps": "1,2,3,1"}, {"cfg": 0.0},
                    {"cfg_schedule": "linear", "shift": 3.0}):
        image = sample(model, **options)
        assert torch.isfinite(image).all() and image.shape[1:] == (16, 16, 3)


def test_image_to_image(models_dir: Path) -> None:
    model = load(write_tiny(models_dir, "tiny_c2i", C2I))
    start = torch.rand(1, 20, 24, 3)  # resized to the sampler size, batch expanded
    out = sample(model, image=start, strength=0.3)
    assert out.shape == (2, 16, 16, 3)
    weak = sample(model, image=start, strength=0.01)
    resized = torch.nn.functional.interpolate(start.permute(0, 3, 1, 2), size=(16, 16), mode="bicubic",
                                              antialias=True).clamp(0, 1).permute(0, 2, 3, 1)
    assert (weak - resized).abs().max() < (out - resized).abs().max()
    with pytest.raises(ValueError, match="image batch 3 must be 1 or equal batch_size 2"):
        sample(model, image=torch.rand(3, 16, 16, 3))


@pytest.mark.parametrize(("overrides", "message"), [
    ({"size": 20}, "multiple of 16"),
    ({"class_index": 10}, "class_index 10 is out of range"),
    ({"stage_steps": "1,2"}, "needs 4 positive counts"),
    ({"stage_steps": "a,b,c"}, "comma-separated integers"),
    ({"conditioning": text_condition(12)}, "class-to-image: disconnect"),
])
def test_bad_sampler_inputs_are_clear_errors(models_dir: Path, overrides: dict, message: str) -> None:
    model = load(write_tiny(models_dir, "tiny_c2i", C2I))
    with pytest.raises(ValueError, match=message):
        sample(model, **overrides)


def test_three_stage_model_refuses_the_official_class_schedule(models_dir: Path) -> None:
    model = load(write_tiny(models_dir, "tiny3", C2I, stages=3))
    with pytest.raises(ValueError, match="defined for 4 stages, this model has 3"):
        sample(model, size=8)
    assert sample(model, size=8, cfg_schedule="linear").shape == (2, 8, 8, 3)


def test_missing_checkpoint_names_folders_and_source(models_dir: Path) -> None:
    with pytest.raises(ModelFileNotFound, match="searched: .*pixelflow.*ShoufaChen/PixelFlow"):
        load("nothing/model.pt")


def test_wrong_family_file_is_refused(models_dir: Path) -> None:
    path = models_dir / "pixelflow" / "mar.pth"
    torch.save({"model_ema": {"diffloss.net.input_proj.weight": torch.zeros(2, 2), "z_proj.weight": torch.zeros(2)}},
               path)
    with pytest.raises(CheckpointError, match="MAR"):
        load("mar.pth")


def test_presets_match_release_shapes_without_config(tmp_path: Path) -> None:
    """Without config.yaml the shapes must match one named preset; a tiny model matches none."""
    path = write_pixelflow(tmp_path / "bare", tiny_state_dict(C2I))
    with pytest.raises(CheckpointError, match="matches no known release configuration"):
        load_pixelflow(path)
    assert {preset.model.patch_size for preset in PRESETS.values()} == {2, 4}


def test_loader_dtype_option(models_dir: Path) -> None:
    model = load(write_tiny(models_dir, "tiny_c2i", C2I), dtype="bf16")
    assert model.patcher.model.proj_out_2.weight.dtype == torch.bfloat16
    image = sample(model, batch_size=1)
    assert torch.isfinite(image).all()


def test_parse_stage_steps() -> None:
    assert parse_stage_steps("", 7, 4) == [7, 7, 7, 7]
    assert parse_stage_steps(" 1, 2,3 ,4", 7, 4) == [1, 2, 3, 4]
    with pytest.raises(ValueError):
        parse_stage_steps("1,0,1,1", 7, 4)


# ------------------------------------------------------------------------------------------- text-to-image chain

def test_flan_t5_loader_and_text_encode_feed_a_t2i_model(models_dir: Path) -> None:
    write_t5_folder(models_dir / "text_encoders" / "tiny-flan-t5", full_model=True)
    encoder_file = write_t5_encoder_file(models_dir / "text_encoders" / "tiny_t5_encoder.safetensors")
    write_t5_tokenizer(encoder_file.parent)  # a single file takes its tokenizer from beside it (or ComfyUI's)
    choices = FlowARFlanT5Loader.INPUT_TYPES()["required"]["t5_name"][0]
    assert {"tiny-flan-t5", "tiny_t5_encoder.safetensors"} <= set(choices)

    conditions = []
    for name in ("tiny-flan-t5", "tiny_t5_encoder.safetensors"):
        text_encoder = FlowARFlanT5Loader().load(name, "fp32")[0]
        conditions.append(FlowARPixelFlowTextEncode().encode(text_encoder, "a red cat", "", 16)[0])
    folder_cond, file_cond = conditions
    assert folder_cond.context.shape == (1, 16, text_encoder.encoder.hidden_size)
    assert folder_cond.mask.sum() < 16 and folder_cond.negative_mask.sum() == 1  # "" is just </s>
    torch.testing.assert_close(file_cond.context, folder_cond.context)

    model = load(write_tiny(models_dir, "tiny_t2i", {**TINY, "cross_attention_dim": text_encoder.encoder.hidden_size}))
    image = sample(model, conditioning=folder_cond)
    assert image.shape == (2, 16, 16, 3)
    other = FlowARPixelFlowTextEncode().encode(text_encoder, "a blue dog on the grass", "", 16)[0]
    assert not torch.equal(image, sample(model, conditioning=other))


def test_text_encode_refuses_an_empty_prompt(models_dir: Path) -> None:
    write_t5_folder(models_dir / "text_encoders" / "tiny-flan-t5", full_model=False)
    text_encoder = FlowARFlanT5Loader().load("tiny-flan-t5", "fp32")[0]
    with pytest.raises(ValueError, match="prompt is empty"):
        FlowARPixelFlowTextEncode().encode(text_encoder, "   ", "", 16)


def test_missing_text_encoder_names_folders_and_source(models_dir: Path) -> None:
    with pytest.raises(ModelFileNotFound, match="text_encoders.*google/flan-t5-xl"):
        FlowARFlanT5Loader().load("flan-t5-xl", "fp32")
