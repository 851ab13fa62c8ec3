"""Reward nodes, called in-process with the standalone bridge: loaders over tiny official-layout folders in
``models/rewards``, the ``REWARD`` payload, weighted combination, ranking, and the errors users see."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from support.rewards import (
    aesthetic_head_state_dict,
    one_thread,  # noqa: F401 - fixture
    smooth_images,
    write_clip_folder,
    write_clip_t5_folder,
    write_grounding_dino_folder,
)
from torch import Tensor

from flowar.nodes import rewards as nodes
from flowar.nodes.rewards import (
    FlowARAestheticLoader,
    FlowARCLIPScoreLoader,
    FlowARCountingRewardLoader,
    FlowARPickScoreLoader,
    FlowARRankImages,
    FlowARReward,
    FlowARRewardCombine,
    FlowARVQAScoreLoader,
    Reward,
)
from flowar.nodes.runtime import ModelFileNotFound

pytestmark = pytest.mark.usefixtures("one_thread")
HEAD = "sac+logos+ava1-l14-linearMSE.pth"


@pytest.fixture
def rewards_dir(models_dir: Path) -> Path:
    folder = models_dir / "rewards"
    write_clip_t5_folder(folder / "clip-flant5-xl")
    write_clip_folder(folder / "clip-vit-large-patch14")
    write_grounding_dino_folder(folder / "grounding-dino-base")
    torch.save(aesthetic_head_state_dict(), folder / HEAD)
    return folder


def brightness(images: Tensor) -> Tensor:
    return images.float().mean(dim=(1, 2, 3)).cpu()


# ---- loaders and the REWARD payload ---------------------------------------------------------------------------
def test_loaders_list_the_folders_and_files(rewards_dir: Path) -> None:
    dirs = FlowARVQAScoreLoader.INPUT_TYPES()["required"]["model_name"][0]
    assert dirs == ["clip-flant5-xl", "clip-vit-large-patch14", "grounding-dino-base"]
    assert FlowARAestheticLoader.INPUT_TYPES()["required"]["head_name"][0] == [HEAD]
    assert FlowARCountingRewardLoader.INPUT_TYPES()["required"]["sam_name"][0] == ["none", *dirs]


def test_reward_payload_is_the_agreed_dataclass() -> None:
    assert [f.name for f in dataclasses.fields(Reward)] == ["name", "score", "patchers"]
    reward = Reward("brightness", brightness)
    assert reward.patchers == () and dataclasses.is_dataclass(reward)
    with pytest.raises(dataclasses.FrozenInstanceError):
        reward.name = "other"  # type: ignore[misc]


def test_vqascore_reward_scores_in_batches_and_loads_its_models(rewards_dir: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (handle,) = FlowARVQAScoreLoader().load("clip-flant5-xl", "fp32")
    (whole,) = FlowARReward().make(handle, "a red cat", batch_size=8)
    (chunked,) = FlowARReward().make(handle, "a red cat", batch_size=2)
    loaded = []
    monkeypatch.setattr(nodes, "load_models", lambda patchers: loaded.append(tuple(patchers)))
    images = smooth_images(5, 28, 28)
    scores = chunked.score(images)
    assert scores.shape == (5,) and scores.dtype == torch.float32 and scores.device.type == "cpu"
    torch.testing.assert_close(scores, whole.score(images), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(scores, handle.model.score(images, "a red cat"), rtol=1e-5, atol=1e-7)
    assert loaded == [handle.patchers, handle.patchers] and len(handle.patchers) == 1
    assert whole.name == "VQAScore[clip-flant5-xl]('a red cat')" and whole.patchers == handle.patchers


def test_every_loader_gives_a_working_reward(rewards_dir: Path) -> None:
    images = smooth_images(2, 32, 32)
    handles = {
        "clip": FlowARCLIPScoreLoader().load("clip-vit-large-patch14", "fp32")[0],
        "pick": FlowARPickScoreLoader().load("clip-vit-large-patch14", "fp32")[0],
        "aesthetic": FlowARAestheticLoader().load("clip-vit-large-patch14", "fp32", HEAD)[0],
        "count": FlowARCountingRewardLoader().load("grounding-dino-base", "none", "fp32")[0],
    }
    prompts = {"clip": "a cat", "pick": "a cat", "aesthetic": "", "count": "two balloons, a bear"}
    for key, handle in handles.items():
        (reward,) = FlowARReward().make(handle, prompts[key])
        scores = reward.score(images)
        assert scores.shape == (2,) and torch.isfinite(scores).all(), key
        assert len(reward.patchers) == len(handle.model.modules)
    assert FlowARReward().make(handles["aesthetic"], "")[0].name == "Aesthetic[sac+logos+ava1-l14-linearMSE]"


def test_pickscore_tokenizer_from_another_folder(rewards_dir: Path) -> None:
    write_clip_folder(rewards_dir / "PickScore_v1", tokenizer=False)
    with pytest.raises(Exception, match="no usable CLIP tokenizer"):
        FlowARPickScoreLoader().load("PickScore_v1", "fp32")
    (handle,) = FlowARPickScoreLoader().load("PickScore_v1", "fp32", tokenizer_from="clip-vit-large-patch14")
    assert handle.model.name == "PickScore[PickScore_v1]"


# ---- errors users see -------------------------------------------------------------------------------------------
def test_missing_folder_names_every_folder_searched_and_the_repository(models_dir: Path) -> None:
    with pytest.raises(ModelFileNotFound) as err:
        FlowARVQAScoreLoader().load("clip-flant5-xxl", "fp32")
    message = str(err.value)
    assert "'clip-flant5-xxl' not found in models/rewards" in message and str(models_dir / "rewards") in message
    assert "zhiqiulin/clip-flant5-xxl" in message
    with pytest.raises(ModelFileNotFound, match="IDEA-Research/grounding-dino-base"):
        FlowARCountingRewardLoader().load("grounding-dino-base", "none", "fp32")
    with pytest.raises(ModelFileNotFound, match="improved-aesthetic-predictor"):
        FlowARAestheticLoader().load("clip", "fp32", HEAD)


def test_bad_prompts_fail_when_the_reward_is_made(rewards_dir: Path) -> None:
    (vqa,) = FlowARVQAScoreLoader().load("clip-flant5-xl", "fp32")
    with pytest.raises(ValueError, match="VQAScore: the prompt is empty"):
        FlowARReward().make(vqa, " ")
    (count,) = FlowARCountingRewardLoader().load("grounding-dino-base", "none", "fp32")
    with pytest.raises(ValueError, match="e.g. \"seven balloons, four bears\""):
        FlowARReward().make(count, "some balloons")


# ---- combination and ranking ------------------------------------------------------------------------------------
def test_combination_is_the_weighted_sum_with_models_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    shared, other = object(), object()
    first = Reward("bright", brightness, (shared,))
    second = Reward("red", lambda images: images[..., 0].mean(dim=(1, 2)), (shared, other))
    loaded = []
    monkeypatch.setattr(nodes, "load_models", lambda patchers: loaded.append(tuple(patchers)))
    (combined,) = FlowARRewardCombine().combine(first, 2.0, second, -0.5, reward_3=first, weight_3=0.0)
    images = smooth_images(3, 8, 8)
    torch.testing.assert_close(combined.score(images), 2.0 * brightness(images) - 0.5 * images[..., 0].mean((1, 2)))
    assert combined.patchers == (shared, other) and loaded == [(shared, other)]
    assert combined.name == "2*bright + -0.5*red"
    with pytest.raises(ValueError, match="every weight is 0"):
        FlowARRewardCombine().combine(first, 0.0, second, 0.0)


def test_rank_sorts_best_first_and_reports_scores() -> None:
    images = torch.stack([torch.full((4, 4, 3), value) for value in (0.2, 0.9, 0.5, 0.9)])  # (4, 4, 4, 3)
    ranked, text, best = FlowARRankImages().rank(images, Reward("bright", brightness))
    assert ranked[:, 0, 0, 0].tolist() == pytest.approx([0.9, 0.9, 0.5, 0.2]) and best == 1
    assert text.splitlines() == ["bright", "#1: image 1 = 0.9", "#2: image 3 = 0.9", "#3: image 2 = 0.5",
                                 "#4: image 0 = 0.2"]  # ties keep the input order
    top, _, _ = FlowARRankImages().rank(images, Reward("bright", brightness), top_k=2)
    assert top.shape == (2, 4, 4, 3)


def test_rank_puts_nan_scores_last_and_checks_the_count() -> None:
    nan_first = Reward("broken", lambda images: torch.tensor([float("nan"), 0.1, 0.3]))
    ranked, _, best = FlowARRankImages().rank(smooth_images(3, 4, 4), nan_first)
    assert best == 2
    with pytest.raises(ValueError, match="returned \\(2,\\) scores for 3 images"):
        FlowARRankImages().rank(smooth_images(3, 4, 4), Reward("short", lambda images: torch.zeros(2)))
