"""CLIP score, PickScore and the LAION aesthetic score on tiny CLIP folders in the Hugging Face layout: each equals
the computation done directly with the stock ``CLIPModel``, the images are preprocessed as RBF does, and the files'
errors are clear."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from support.rewards import (
    aesthetic_head_state_dict,
    clip_model,
    one_thread,  # noqa: F401 - fixture
    smooth_images,
    write_clip_folder,
    write_clip_tokenizer,
    write_grounding_dino_folder,
)
from torch import Tensor, nn
from transformers import AutoTokenizer

from flowar.models.checkpoint import CheckpointError
from flowar.models.rewards import RewardModel
from flowar.models.rewards.aesthetic import load_aesthetic
from flowar.models.rewards.clip_score import load_clip_score
from flowar.models.rewards.pickscore import load_pickscore
from flowar.models.rewards.preprocess import CLIP_MEAN, CLIP_STD, center_crop, shortest_side_size

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip_folder(tmp_path_factory.mktemp("rewards") / "clip-vit-large-patch14")


@pytest.fixture(scope="module")
def head_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("heads") / "sac+logos+ava1-l14-linearMSE.pth"
    torch.save(aesthetic_head_state_dict(), path)
    return path


def features(output) -> Tensor:
    return output if isinstance(output, Tensor) else output.pooler_output  # transformers 4.x / 5.x


def reference_image_embeddings(images: Tensor) -> Tensor:
    """Unit embeddings of 32 x 32 images (no resize needed) straight from the stock model."""
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        out = clip_model().get_image_features(pixel_values=(images.permute(0, 3, 1, 2) - mean) / std)
    return F.normalize(features(out), dim=-1)


def reference_text_embedding(folder: Path, prompt: str) -> Tensor:
    tokens = AutoTokenizer.from_pretrained(folder)([prompt], return_tensors="pt")
    with torch.no_grad():
        return F.normalize(features(clip_model().get_text_features(**tokens)), dim=-1)  # (1, 16)


# ---- CLIP score and PickScore ---------------------------------------------------------------------------------
@pytest.mark.parametrize("loader", [load_clip_score, load_pickscore], ids=["clip_score", "pickscore"])
def test_score_is_the_cosine_of_the_stock_embeddings(clip_dir: Path, loader) -> None:
    reward = loader(clip_dir)
    images = smooth_images(3, 32, 32)
    scores = reward.score(images, "a red cat")
    expected = (reference_image_embeddings(images) @ reference_text_embedding(clip_dir, "a red cat").T)[:, 0]
    assert isinstance(reward, RewardModel) and scores.shape == (3,) and scores.dtype == torch.float32
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)
    assert (scores.abs() <= 1).all() and not torch.allclose(scores, reward.score(images, "a blue dog"))


def test_names_say_which_reward(clip_dir: Path) -> None:
    assert load_clip_score(clip_dir).name == "CLIP score[clip-vit-large-patch14]"
    assert load_pickscore(clip_dir).name == "PickScore[clip-vit-large-patch14]"


def test_non_square_images_are_resized_then_centre_cropped(clip_dir: Path) -> None:
    """RBF's Resize(224): shorter side to the model size, longer truncated; then our centre crop (no-op if square)."""
    assert shortest_side_size(40, 64, 32) == (32, 51) and shortest_side_size(64, 40, 32) == (51, 32)
    column = torch.arange(51.0).expand(1, 1, 32, 51)
    assert center_crop(column, 32)[0, 0, 0, [0, -1]].tolist() == [10.0, 41.0]  # round((51 - 32) / 2) = 10
    embedder = load_clip_score(clip_dir).embedder
    pixels = embedder.preprocess(smooth_images(2, 40, 64))
    assert pixels.shape == (2, 3, 32, 32)
    square = smooth_images(2, 32, 32)
    torch.testing.assert_close(embedder.preprocess(square),
                               (square.permute(0, 3, 1, 2) - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1))
                               / torch.tensor(CLIP_STD).view(1, 3, 1, 1))


def test_long_prompts_are_truncated_to_77_tokens(clip_dir: Path) -> None:
    scores = load_clip_score(clip_dir).score(smooth_images(1, 32, 32), "a red cat " * 40)
    assert torch.isfinite(scores).all()


def test_pickscore_takes_the_tokenizer_from_another_clip_folder(tmp_path: Path) -> None:
    folder = write_clip_folder(tmp_path / "PickScore_v1", tokenizer=False)
    with pytest.raises(CheckpointError, match="no usable CLIP tokenizer .tried: .*PickScore_v1 .no tokenizer.json or "
                                              "vocab.json.*yuvalkirstain/PickScore_v1"):
        load_pickscore(folder)
    tokenizer = write_clip_tokenizer(tmp_path / "clip-vit-large-patch14")
    images = smooth_images(2, 32, 32)
    scores = load_pickscore(folder, tokenizer_dirs=[tokenizer]).score(images, "a cat")
    expected = (reference_image_embeddings(images) @ reference_text_embedding(tokenizer, "a cat").T)[:, 0]
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loader", [load_clip_score, load_pickscore], ids=["clip_score", "pickscore"])
def test_empty_prompt_is_refused(clip_dir: Path, loader) -> None:
    reward = loader(clip_dir)
    with pytest.raises(ValueError, match=r"(CLIP score|PickScore)\[clip-vit-large-patch14\]: the prompt is empty"):
        reward.score(smooth_images(1, 32, 32), "  ")
    with pytest.raises(ValueError, match="the prompt is empty"):
        reward.check_prompt("")


# ---- aesthetic --------------------------------------------------------------------------------------------------
def test_aesthetic_is_the_head_on_the_unit_image_embedding(clip_dir: Path, head_file: Path) -> None:
    reward = load_aesthetic(clip_dir, head_file)
    images = smooth_images(3, 32, 32)
    state_dict = aesthetic_head_state_dict()
    head = nn.Sequential(nn.Linear(16, 24), nn.Dropout(0.2), nn.Linear(24, 12), nn.Dropout(0.2), nn.Linear(12, 8),
                         nn.Dropout(0.1), nn.Linear(8, 4), nn.Linear(4, 1)).eval()
    head.load_state_dict({k.removeprefix("layers."): v for k, v in state_dict.items()})
    with torch.no_grad():
        expected = head(reference_image_embeddings(images))[:, 0]
    scores = reward.score(images, "")  # the prompt is not used, an empty one is fine
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(reward.score(images, "anything"), scores)
    assert reward.name == "Aesthetic[sac+logos+ava1-l14-linearMSE]" and len(reward.modules) == 2
    assert reward.embedder.tokenizer is None  # the text side is never needed
    reward.check_prompt("")


def test_aesthetic_head_of_another_layout_is_refused(tmp_path: Path, clip_dir: Path) -> None:
    path = tmp_path / "head.pth"
    torch.save(nn.Sequential(nn.Linear(16, 1)).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"not the LAION aesthetic head: expected the keys layers.*found 0.bias, "
                                              r"0.weight; get sac\+logos\+ava1-l14-linearMSE.pth"):
        load_aesthetic(clip_dir, path)


def test_aesthetic_head_for_another_clip_is_refused(tmp_path: Path, clip_dir: Path) -> None:
    path = tmp_path / "head.pth"
    torch.save(aesthetic_head_state_dict(width=768), path)
    with pytest.raises(CheckpointError, match="takes 768-wide CLIP embeddings but the CLIP model gives 16"):
        load_aesthetic(clip_dir, path)


def test_missing_head_file(tmp_path: Path, clip_dir: Path) -> None:
    with pytest.raises(CheckpointError, match="checkpoint file not found: .*linearMSE.pth"):
        load_aesthetic(clip_dir, tmp_path / "sac+logos+ava1-l14-linearMSE.pth")


# ---- folders ----------------------------------------------------------------------------------------------------
def test_missing_clip_folder_names_the_repository(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="CLIP folder not found: .*openai/clip-vit-large-patch14"):
        load_clip_score(tmp_path / "clip")


def test_folder_of_another_model_type(tmp_path: Path) -> None:
    folder = write_grounding_dino_folder(tmp_path / "grounding-dino-base")
    with pytest.raises(CheckpointError, match="describes a 'grounding-dino' model, not CLIP; PickScore needs"):
        load_pickscore(folder)
