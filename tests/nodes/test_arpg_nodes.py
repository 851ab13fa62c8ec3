"""ARPG nodes in-process (standalone bridge): tiny checkpoints written in the official containers -> loaders ->
sampler -> IMAGE; editing through VQ Encode / image + mask; the cache after an interrupt; errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from support.checkpoints import family_state_dict, write_arpg, write_model_container

from flowar.models.arpg import ARPGConfig, ARPGTransformer
from flowar.models.arpg_release import load_arpg
from flowar.models.checkpoint import CheckpointError
from flowar.models.vq16 import VQConfig, VQModel
from flowar.nodes import arpg as arpg_nodes
from flowar.nodes.arpg import (
    ARPGTokens,
    FlowARARPGLoader,
    FlowARARPGSampler,
    FlowARVQDecode,
    FlowARVQEncode,
    FlowARVQTokenizerLoader,
    TokenPreview,
)
from flowar.nodes.runtime.folders import ModelFileNotFound

TINY_ARPG = {"dim": 32, "n_layer": 2, "n_head": 2, "vocab_size": 16, "num_classes": 10, "block_size": 16,
             "multiple_of": 16, "class_dropout_prob": 0.1}  # official ModelArgs names, a training-only one included
TINY_VQ = {"codebook_size": 16, "codebook_embed_dim": 4, "encoder_ch_mult": [1, 1, 1, 1, 1],
           "decoder_ch_mult": [1, 1, 1, 1, 1], "z_channels": 8, "ch": 32, "num_res_blocks": 1}
SAMPLER = {"seed": 3, "steps": 4, "schedule": "arccos", "cfg": 3.0, "cfg_schedule": "linear", "temperature": 1.0,
           "top_k": 0, "top_p": 1.0, "batch_size": 2, "class_index": 4}
SIZE = 64  # 4x4 tokens of 16 pixels


def randomised(module: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    for parameter in module.parameters():  # the official init zeroes the head; make every layer count
        torch.nn.init.normal_(parameter, std=0.3)
    return module.state_dict()


@pytest.fixture
def release_files(models_dir: Path) -> tuple[str, str]:
    arpg = ARPGTransformer(ARPGConfig.from_model_args(TINY_ARPG))
    write_arpg(models_dir / "arpg" / "arpg_tiny.pt", randomised(arpg, 0), TINY_ARPG)
    vq = VQModel(VQConfig.from_params(TINY_VQ))
    write_model_container(models_dir / "vq" / "vq_tiny.pt", randomised(vq, 1), TINY_VQ)
    return "arpg_tiny.pt", "vq_tiny.pt"


@pytest.fixture
def loaded(release_files):
    model = FlowARARPGLoader().load(release_files[0], "fp32")[0]
    vq = FlowARVQTokenizerLoader().load(release_files[1], "auto")[0]
    return model, vq


def sample(model, vq, **overrides) -> tuple[torch.Tensor, ARPGTokens]:
    return FlowARARPGSampler().sample(model, vq, **{**SAMPLER, **overrides})


def test_loaders_list_and_load_official_containers(release_files) -> None:
    assert release_files[0] in FlowARARPGLoader.INPUT_TYPES()["required"]["ckpt_name"][0]
    assert release_files[1] in FlowARVQTokenizerLoader.INPUT_TYPES()["required"]["vq_name"][0]
    model = FlowARARPGLoader().load(release_files[0], "fp32")[0]
    vq = FlowARVQTokenizerLoader().load(release_files[1], "auto")[0]
    assert model.config.n_head == 2 and model.source.endswith("arpg_tiny.json")
    assert vq.config.downsample == 16 and vq.patcher.model.quant_conv.weight.dtype == torch.float32


def test_sampler_gives_images_and_same_seed_same_image(loaded) -> None:
    model, vq = loaded
    image, tokens = sample(model, vq)
    assert image.shape == (2, SIZE, SIZE, 3) and image.dtype == torch.float32
    assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0
    assert tokens.tokens.shape == (2, 4, 4) and bool(tokens.known.all())
    again, _ = sample(model, vq)
    assert torch.equal(image, again)
    assert not torch.equal(image, sample(model, vq, seed=4)[0])
    assert not torch.equal(image[0], image[1])
    torch.testing.assert_close(FlowARVQDecode().decode(vq, tokens)[0], image)


def test_sampler_options_run(loaded) -> None:
    model, vq = loaded
    for options in ({"schedule": "raster", "steps": 999}, {"schedule": "cosine", "cfg_schedule": "constant"},
                    {"cfg": 1.0, "top_k": 3, "top_p": 0.8, "temperature": 0.7}):
        image, _ = sample(model, vq, **options)
        assert image.shape == (2, SIZE, SIZE, 3) and torch.isfinite(image).all()


def test_inpainting_leaves_known_tokens_untouched(loaded) -> None:
    model, vq = loaded
    picture = torch.rand(1, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, 20:40, 20:40] = 1.0  # touches the centre 2x2 tokens
    encoded = FlowARVQEncode().encode(vq, picture, mask)[0]
    assert (~encoded.known).nonzero().tolist() == [[1, 1], [1, 2], [2, 1], [2, 2]]
    image, tokens = sample(model, vq, image=picture, mask=mask)
    assert image.shape == (2, SIZE, SIZE, 3)
    keep = encoded.known
    assert torch.equal(tokens.tokens[:, keep], encoded.tokens.expand(2, -1, -1)[:, keep])
    through_tokens = sample(model, vq, tokens=encoded)[1]
    assert torch.equal(through_tokens.tokens, tokens.tokens)  # image + mask == VQ Encode -> tokens


def test_editing_fewer_tokens_than_steps_uses_one_step_per_token(loaded) -> None:
    model, vq = loaded
    picture = torch.rand(1, SIZE, SIZE, 3, generator=torch.Generator().manual_seed(3))
    mask = torch.zeros(1, SIZE, SIZE)
    mask[:, :8, :8] = 1.0  # one unknown token, far fewer than the steps asked for
    encoded = FlowARVQEncode().encode(vq, picture, mask)[0]
    assert int((~encoded.known).sum()) == 1
    image, tokens = sample(model, vq, steps=64, image=picture, mask=mask)  # would need 1 <= steps <= 1 in the sampler
    assert image.shape == (2, SIZE, SIZE, 3) and bool(tokens.known.all())
    keep = encoded.known
    assert torch.equal(tokens.tokens[:, keep], encoded.tokens.expand(2, -1, -1)[:, keep])


def test_outpainting_expands_the_canvas(loaded) -> None:
    model, vq = loaded
    canvas = torch.rand(1, SIZE, SIZE + 32, 3)
    mask = torch.zeros(1, SIZE, SIZE + 32)
    mask[:, :, SIZE:] = 1.0  # generate two new token columns on the right
    image, tokens = sample(model, vq, image=canvas, mask=mask, batch_size=1)
    assert image.shape == (1, SIZE, SIZE + 32, 3) and tokens.tokens.shape == (1, 4, 6)


def test_interrupted_run_leaves_no_cache_allocated(loaded, monkeypatch: pytest.MonkeyPatch) -> None:
    model, vq = loaded
    caches, factory = [], model.patcher.model.new_kv_cache

    def spy(*args, **kwargs):
        caches.append(factory(*args, **kwargs))
        return caches[-1]

    class Interrupting:
        """Stands in for the ComfyUI progress bar when the user presses cancel at step 2."""

        def __init__(self, total: int, **_) -> None:
            self.total = total

        def __call__(self, step: int, total: int, preview=None) -> None:
            assert caches[-1].allocated
            if step == 2:
                raise InterruptedError("cancelled")

    monkeypatch.setattr(model.patcher.model, "new_kv_cache", spy)
    monkeypatch.setattr(arpg_nodes, "Progress", Interrupting)
    with pytest.raises(InterruptedError):
        sample(model, vq)
    assert len(caches) == 1 and not caches[0].allocated


def test_previews_show_decided_tokens_a_few_times_per_run(loaded) -> None:
    vq = loaded[1]
    decided = torch.zeros(4, 4, dtype=torch.bool)
    decided[0] = True  # the first token row is decided
    tokens = torch.randint(0, 16, (2, 4, 4))
    shown = TokenPreview(vq, total_steps=3)(tokens, decided)
    assert shown.shape == (1, SIZE, SIZE, 3)
    assert (shown[:, 16:] == 0.5).all() and not (shown[:, :16] == 0.5).all()
    throttled = TokenPreview(vq, total_steps=9)  # at most 8 previews: every second step, and the last
    shown_at = [step for step in range(1, 10) if throttled(tokens, decided) is not None]
    assert shown_at == [2, 4, 6, 8, 9]


def test_loader_dtype_option(loaded, release_files) -> None:
    model = FlowARARPGLoader().load(release_files[0], "bf16")[0]
    assert model.patcher.model.head.weight.dtype == torch.bfloat16
    image, _ = sample(model, loaded[1], batch_size=1)
    assert torch.isfinite(image).all()


def test_wrong_checkpoint_for_a_loader_is_named(release_files, models_dir: Path) -> None:
    with pytest.raises(CheckpointError, match="VQ-16 tokenizer checkpoint.*VQ Tokenizer Loader"):
        FlowARARPGLoader().load("../vq/vq_tiny.pt", "fp32")
    write_model_container(models_dir / "vq" / "kl16.ckpt", family_state_dict("kl16"))
    with pytest.raises(CheckpointError, match="MAR KL-16 VAE"):
        FlowARVQTokenizerLoader().load("kl16.ckpt", "fp32")


def test_missing_checkpoint_names_folders_and_source(models_dir: Path) -> None:
    with pytest.raises(ModelFileNotFound, match="searched: .*arpg.*hp-l33/ARPG"):
        FlowARARPGLoader().load("arpg_300m.pt", "auto")
    with pytest.raises(ModelFileNotFound, match="models/vq.*LlamaGen"):
        FlowARVQTokenizerLoader().load("vq_ds16_c2i.pt", "auto")


def test_tiny_model_without_sidecar_matches_no_release(tmp_path: Path) -> None:
    path = write_arpg(tmp_path / "bare.pt", randomised(ARPGTransformer(ARPGConfig.from_model_args(TINY_ARPG)), 0))
    with pytest.raises(CheckpointError, match="matches no known release configuration"):
        load_arpg(path)


def mismatched_vq(models_dir: Path) -> object:
    config = {**TINY_VQ, "codebook_size": 32}
    write_model_container(models_dir / "vq" / "other.pt", randomised(VQModel(VQConfig.from_params(config)), 2), config)
    return FlowARVQTokenizerLoader().load("other.pt", "fp32")[0]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"image": torch.rand(1, 60, 64, 3), "mask": torch.ones(1, 60, 64)}, "64x60 is not a multiple of 16"),
    ({"image": torch.rand(1, 64, 64, 3), "mask": torch.ones(1, 64, 64)[:, :32]}, "mask is 64x32 but the image is"),
    ({"image": torch.rand(1, 64, 64, 3), "mask": torch.zeros(1, 64, 64)}, "mask marks no token to regenerate"),
    ({"image": torch.rand(1, 64, 64, 3)}, "needs a mask"),
    ({"mask": torch.ones(1, 64, 64)}, "mask needs the image"),
    ({"image": torch.rand(3, 64, 64, 3), "mask": torch.ones(1, 64, 64)}, "batch 3 must be 1 or equal batch_size 2"),
    ({"class_index": 10}, "class index 10 is out of range: this model has classes 0..9"),
    ({"steps": 17}, "steps must be between 1 and the number of tokens to generate \\(16\\)"),
    ({"top_k": 17}, "top_k must be between 0"),
    ({"top_p": 0.0}, "top_p must be in"),
])
def test_bad_sampler_inputs_are_clear_errors(loaded, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sample(*loaded, **overrides)


def test_masks_selecting_different_tokens_per_image_are_refused(loaded) -> None:
    mask = torch.zeros(2, SIZE, SIZE)
    mask[0, :16], mask[1, -16:] = 1.0, 1.0
    with pytest.raises(ValueError, match="select different tokens"):
        FlowARVQEncode().encode(loaded[1], torch.rand(2, SIZE, SIZE, 3), mask)


def test_tokens_and_image_together_are_refused(loaded) -> None:
    model, vq = loaded
    encoded = FlowARVQEncode().encode(vq, torch.rand(1, SIZE, SIZE, 3))[0]
    assert bool(encoded.known.all())
    with pytest.raises(ValueError, match="either tokens or an image"):
        sample(model, vq, tokens=encoded, image=torch.rand(1, SIZE, SIZE, 3), mask=torch.ones(1, SIZE, SIZE))
    with pytest.raises(ValueError, match="nothing to generate"):
        sample(model, vq, tokens=encoded)


def test_tokenizer_must_match_the_model(loaded, models_dir: Path) -> None:
    with pytest.raises(ValueError, match="VQ tokenizer has 32 codes but the ARPG model predicts 16"):
        sample(loaded[0], mismatched_vq(models_dir))
    foreign = ARPGTokens(torch.full((1, 4, 4), 20), torch.ones(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="not indices of this tokenizer's 16 codes"):
        FlowARVQDecode().decode(loaded[1], foreign)
