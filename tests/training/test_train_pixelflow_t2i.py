"""Training code of the built-in text-to-image PixelFlow (issue 8): the word-level tokenizer, the tiny T5 trained
with the transformer, the saved folders through the pack's own loaders and nodes, and count scoring."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from flowar.models.pixelflow import PixelFlowConfig
from flowar.models.shapes import CAPTIONS
from flowar.nodes.pixelflow import FlowARFlanT5Loader, FlowARPixelFlowLoader, FlowARPixelFlowSampler, \
    FlowARPixelFlowTextEncode
from flowar.samplers.pixelflow.schedule import cascade_schedule
from flowar.tooling.accuracy import score_counts
from flowar.tooling.pixelflow_eval import count_accuracy
from flowar.tooling.world import generate_many, image_batch
from flowar.train.loop import TrainSettings
from flowar.train.pixelflow_t2i import PROMPTS, save_text_encoder, t2i_task
from flowar.train.pixelflow_training import save_release, train
from flowar.train.shapes_tokenizer import SPECIAL_TOKENS, caption_words, save_tokenizer, shapes_tokenizer
from support.fixtures import REPO_ROOT

MICRO = PixelFlowConfig(num_attention_heads=2, attention_head_dim=8, depth=1, patch_size=2, cross_attention_dim=64)
SCHEDULE = cascade_schedule(1000, 2)
QUICK = TrainSettings(batch_size=8, lr=3e-3, warmup_steps=5, log_every=1)


def test_tokenizer_has_one_token_per_caption_word_in_t5_conventions(tmp_path: Path) -> None:
    tokenizer = shapes_tokenizer()
    words = caption_words()
    assert len(tokenizer) == len(SPECIAL_TOKENS) + len(words) == 17
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    ids = tokenizer("Two Green squares.")["input_ids"]
    assert ids == [tokenizer.convert_tokens_to_ids(w) for w in ("two", "green", "squares")] + [1]
    assert tokenizer("a purple cow")["input_ids"] == [2, 2, 2, 1] and tokenizer("")["input_ids"] == [1]
    save_tokenizer(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and config["model_max_length"] == 16
    loaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert all(loaded(c)["input_ids"] == tokenizer(c)["input_ids"] for c in CAPTIONS)


def test_captions_label_the_images_and_the_text_encoder_trains_with_the_transformer() -> None:
    task = t2i_task(MICRO)
    sample = generate_many([3])[0]
    assert PROMPTS[task.label(sample)] == sample.caption and PROMPTS[task.null_label] == ""
    torch.manual_seed(0)
    initial = task.build()["text_encoder"].state_dict()
    result = train(task, SCHEDULE, seed=0, steps=3, settings=QUICK, log=lambda _: None)
    trained = result.ema["text_encoder"].state_dict()
    assert any(not torch.equal(initial[name], trained[name]) for name in initial)
    assert result.losses[0] == train(task, SCHEDULE, seed=0, steps=1, settings=QUICK, log=lambda _: None).losses[0]


@pytest.fixture(scope="module")
def micro_t2i(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 2-step micro text-to-image model and its text encoder, saved as the script saves them."""
    root = tmp_path_factory.mktemp("t2i")
    result = train(t2i_task(MICRO), SCHEDULE, seed=0, steps=2, settings=QUICK, log=lambda _: None)
    save_release(result.ema["pixelflow"], SCHEDULE, root / "pixelflow" / "shapes-micro", resolution=32,
                 provenance={"seed": 0})
    save_text_encoder(result.ema["text_encoder"], root / "text_encoders" / "shapes-micro-t5")
    return root / "pixelflow" / "shapes-micro", root / "text_encoders" / "shapes-micro-t5"


def test_saved_folders_run_through_the_loaders_text_encode_and_sampler(micro_t2i, models_dir: Path) -> None:
    pixelflow_dir, encoder_dir = micro_t2i
    assert sorted(p.name for p in encoder_dir.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                             "tokenizer_config.json"]
    for source, folder in ((pixelflow_dir, "pixelflow"), (encoder_dir, "text_encoders")):
        (models_dir / folder / source.name).symlink_to(source, target_is_directory=True)
    assert "shapes-micro-t5" in FlowARFlanT5Loader.INPUT_TYPES()["required"]["t5_name"][0]
    encoder = FlowARFlanT5Loader().load("shapes-micro-t5", "fp32")[0]
    model = FlowARPixelFlowLoader().load("shapes-micro/model.safetensors", "fp32")[0]
    images = []
    for max_length in (16, 512):  # padding is masked: the same image whatever the length
        conditioning = FlowARPixelFlowTextEncode().encode(encoder, "three blue squares", "", max_length)[0]
        assert conditioning.context.shape == (1, max_length, 64)
        images.append(FlowARPixelFlowSampler().sample(model, seed=0, steps=2, cfg=4.0, cfg_schedule="official",
                                                      shift=1.0, solver="euler", size=32, batch_size=1,
                                                      class_index=0, conditioning=conditioning)[0])
    assert images[0].shape == (1, 32, 32, 3)
    torch.testing.assert_close(images[0], images[1], atol=1e-5, rtol=0)


def test_count_scoring_accepts_true_captions_and_rejects_wrong_ones(micro_t2i) -> None:
    samples = generate_many(range(24))
    images = image_batch(samples)
    assert score_counts(images, [s.caption for s in samples]).correct >= 23
    wrong = [CAPTIONS[(CAPTIONS.index(s.caption) + 1) % len(CAPTIONS)] for s in samples]  # one more, or another class
    assert score_counts(images, wrong).correct == 0
    from flowar.models.flan_t5 import load_t5_encoder
    from flowar.models.pixelflow_release import load_pixelflow

    model, release, _ = load_pixelflow(micro_t2i[0] / "model.safetensors")
    accuracy = count_accuracy(model, load_t5_encoder(micro_t2i[1]), SCHEDULE, samples=5, batch=3)
    assert accuracy.total == 5 and [t for _, t in accuracy.per_shape.values()] == [5, 0, 0]  # captions 0..4: circles


@pytest.mark.slow
def test_training_script_runs_from_the_repository_root(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "flowar.train.pixelflow_t2i", "--out", str(tmp_path / "pf"),
                             "--text-encoder-out", str(tmp_path / "t5"), "--steps", "2", "--batch-size", "4"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "2 steps in" in result.stdout and "text encoder saved in" in result.stdout
    assert (tmp_path / "pf" / "config.yaml").is_file() and (tmp_path / "t5" / "tokenizer.json").is_file()
