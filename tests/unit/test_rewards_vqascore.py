"""VQAScore with CLIP-FlanT5: the official checkpoint layouts load strictly, the exact t2v_metrics prompt reaches the
tokenizer, the score is exp(-mean CE) of "Yes" computed from the stock modules, images are padded to a square as
``expand2square`` + the CLIP processor do, and bad inputs give clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.rewards import (
    YES_WORDS,
    clip_t5_parts,
    clip_t5_state_dict,
    one_thread,  # noqa: F401 - fixture
    smooth_images,
    write_clip_t5_folder,
)
from support.t5 import tokenizer_object, write_t5_folder, write_t5_tokenizer
from torch import Tensor
from transformers import AutoTokenizer, CLIPImageProcessor

from flowar.models.checkpoint import CheckpointError
from flowar.models.rewards import RewardModel
from flowar.models.rewards.preprocess import CLIP_MEAN, CLIP_STD, pad_to_square
from flowar.models.rewards.vqascore import VQAScore, load_vqascore

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "a red cat"
QUESTION_TEXT = (  # t2v_metrics: SYSTEM_MSG + " USER: " + "<image>" + "\n" + question + " ASSISTANT: "
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, "
    "and polite answers to the user's questions. USER: <image>\n"
    'Does this figure show "a red cat"? Please answer yes or no. ASSISTANT: '
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_clip_t5_folder(tmp_path_factory.mktemp("rewards") / "clip-flant5-xl", "bin")


@pytest.fixture(scope="module")
def reward(folder: Path) -> VQAScore:
    return load_vqascore(folder, dtype=torch.float32)


def chunk_ids(folder: Path, text: str) -> list[int]:
    """What t2v_metrics' tokenizer gives for one chunk: ``AutoTokenizer`` of the folder, default special tokens."""
    return AutoTokenizer.from_pretrained(folder)(text).input_ids


def reference_scores(folder: Path, pixels: Tensor) -> Tensor:
    """exp(-mean CE) of [▁Yes, </s>] straight from the stock modules, with T5's own label shift."""
    t5, vision, projector = clip_t5_parts()
    before, after = QUESTION_TEXT.split("<image>")
    with torch.no_grad():
        image_tokens = projector(vision(pixels, output_hidden_states=True).hidden_states[-2][:, 1:])  # (B, 4, 32)
        embed = lambda text: t5.shared(torch.tensor(chunk_ids(folder, text))).expand(len(pixels), -1, -1)  # noqa
        inputs = torch.cat([embed(before), image_tokens, embed(after)], dim=1)
        labels = torch.tensor(chunk_ids(folder, "Yes")).repeat(len(pixels), 1)  # (B, 2)
        vocab = tokenizer_object(YES_WORDS).get_vocab_size()  # 41 of the 48 rows
        logits = t5(inputs_embeds=inputs, labels=labels).logits[..., :vocab]  # (B, 2, 41)
    log_probs = logits.log_softmax(-1).gather(-1, labels[..., None])[..., 0]  # (B, 2)
    return log_probs.mean(-1).exp()


# ---- loading --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["bin", "safetensors", "sharded"])
def test_every_release_layout_loads_strictly(tmp_path: Path, layout: str) -> None:
    reward = load_vqascore(write_clip_t5_folder(tmp_path / "clip-flant5-xxl", layout), dtype=torch.float32)
    model = reward.model
    expected = clip_t5_state_dict()
    assert isinstance(reward, RewardModel) and reward.modules == (model,) and reward.name == "VQAScore[clip-flant5-xxl]"
    torch.testing.assert_close(model.language_model.lm_head.weight, expected["lm_head.weight"], rtol=0, atol=0)
    torch.testing.assert_close(model.language_model.shared.weight, expected["shared.weight"], rtol=0, atol=0)
    assert model.language_model.lm_head.weight.data_ptr() != model.language_model.shared.weight.data_ptr()
    assert model.language_model.encoder.embed_tokens is model.language_model.shared  # one embedding module
    torch.testing.assert_close(model.mm_projector[2].bias, expected["mm_projector.2.bias"], rtol=0, atol=0)
    assert not any(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert model.vision_tower.config.image_size == 28 and model.vision_tower.config.num_hidden_layers == 3


class RecordingTokenizer:
    """Passes calls to the real tokenizer and keeps every text it was given."""

    def __init__(self, inner) -> None:
        self.inner, self.texts = inner, []

    def __call__(self, text: str, **kwargs):
        self.texts.append(text)
        return self.inner(text, **kwargs)

    def __len__(self) -> int:
        return len(self.inner)


def test_the_exact_question_and_answer_reach_the_tokenizer(reward: VQAScore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reward, "tokenizer", RecordingTokenizer(reward.tokenizer))
    reward.score(smooth_images(1, 28, 28), PROMPT)
    before, after = QUESTION_TEXT.split("<image>")
    assert reward.tokenizer.texts == [before, after, "Yes"]  # chunk by chunk around <image>, then the answer


def test_token_ids_interleave_the_image_slot(folder: Path, reward: VQAScore) -> None:
    ids = reward.token_ids(QUESTION_TEXT).tolist()
    before, after = (chunk_ids(folder, part) for part in QUESTION_TEXT.split("<image>"))
    assert ids == before + [-200] + after and before[-1] == after[-1] == 1  # each chunk ends in </s>
    assert reward.token_ids("Yes").tolist() == [41 - 1, 1]  # [▁Yes, </s>]; ▁Yes is the 41st piece


# ---- the score ------------------------------------------------------------------------------------------------
def test_score_is_exp_of_minus_mean_cross_entropy(folder: Path, reward: VQAScore) -> None:
    images = smooth_images(3, 28, 28)
    scores = reward.score(images, PROMPT)
    assert scores.dtype == torch.float32 and scores.device.type == "cpu" and scores.shape == (3,)
    torch.testing.assert_close(scores, reference_scores(folder, reward.preprocess(images)), rtol=1e-5, atol=1e-7)
    assert (scores > 0).all() and (scores <= 1).all() and scores.std() > 0  # the images are told apart


def test_softmax_runs_over_the_tokenizer_entries_only(reward: VQAScore) -> None:
    """t2v_metrics resizes the head to len(tokenizer) (41 here) although the checkpoint has 48 rows."""
    images = smooth_images(1, 28, 28)
    assert reward.model.language_model.config.vocab_size == 48 and len(reward.tokenizer) == 41
    full = reward.model(reward.token_ids(QUESTION_TEXT), reward.preprocess(images), reward.token_ids("Yes"))
    whole_vocab = full.log_softmax(-1).gather(-1, reward.token_ids("Yes")[None, :, None])[..., 0].mean(-1).exp()
    assert not torch.allclose(reward.score(images, PROMPT), whole_vocab.detach(), rtol=1e-3)


def test_a_batch_scores_like_single_images(reward: VQAScore) -> None:
    images = smooth_images(3, 20, 36, seed=1)
    singles = torch.cat([reward.score(image[None], PROMPT) for image in images])
    torch.testing.assert_close(reward.score(images, PROMPT), singles, rtol=1e-5, atol=1e-7)


def test_bf16_scores_are_finite_and_close(folder: Path, reward: VQAScore) -> None:
    images = smooth_images(2, 28, 28)
    low = load_vqascore(folder, dtype=torch.bfloat16)
    assert next(low.model.parameters()).dtype == torch.bfloat16
    scores = low.score(images, PROMPT)
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()
    torch.testing.assert_close(scores, reward.score(images, PROMPT), rtol=0.1, atol=0.01)


# ---- images -----------------------------------------------------------------------------------------------------
def test_pad_to_square_centres_the_image() -> None:
    pixels = torch.ones(1, 3, 2, 5)  # wide: 3 rows of padding, 1 above and 2 below (floor of half)
    padded = pad_to_square(pixels, (0.1, 0.2, 0.3))
    assert padded.shape == (1, 3, 5, 5)
    assert (padded[0, :, 1:3] == 1).all()
    torch.testing.assert_close(padded[0, :, 0, 0], torch.tensor([0.1, 0.2, 0.3]))
    torch.testing.assert_close(padded[0, :, 4, 4], torch.tensor([0.1, 0.2, 0.3]))
    assert pad_to_square(torch.ones(1, 3, 4, 2), (0, 0, 0))[0, 0, :, 1:3].eq(1).all()  # tall: 1 column left


@pytest.mark.parametrize("size", [(20, 36), (36, 20), (28, 28), (60, 44)])
def test_preprocessing_matches_expand2square_and_the_clip_processor(reward: VQAScore, size: tuple[int, int]) -> None:
    """The official path: ToPILImage (truncation), expand2square on (122, 116, 104), CLIPImageProcessor (bicubic)."""
    images = smooth_images(1, *size, seed=2)
    pil = Image.fromarray(np.floor(images[0].numpy() * 255).astype(np.uint8))
    side = max(pil.size)
    square = Image.new("RGB", (side, side), (122, 116, 104))
    square.paste(pil, ((side - pil.width) // 2, (side - pil.height) // 2))
    processor = CLIPImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28},
                                   image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), resample=3)
    expected = processor(images=square, return_tensors="pt")["pixel_values"]  # (1, 3, 28, 28)
    ours = reward.preprocess(images)
    assert ours.shape == expected.shape
    assert (ours - expected).abs().max() < 2.5 / 255 / min(CLIP_STD)  # about one 8-bit level after resizing


# ---- errors -------------------------------------------------------------------------------------------------------
def test_empty_prompt_is_refused(reward: VQAScore) -> None:
    for prompt in ("", "   \n"):
        with pytest.raises(ValueError, match="VQAScore: the prompt is empty"):
            reward.score(smooth_images(1, 28, 28), prompt)
        with pytest.raises(ValueError, match="the prompt is empty"):
            reward.check_prompt(prompt)


def test_images_of_the_wrong_shape_are_refused(reward: VQAScore) -> None:
    with pytest.raises(ValueError, match=r"IMAGE batches \[B, H, W, 3\]; got .*\(3, 28, 28\)"):
        reward.score(torch.rand(3, 28, 28), PROMPT)
    with pytest.raises(ValueError, match="NaN"):
        reward.score(torch.full((1, 28, 28, 3), float("nan")), PROMPT)


def test_missing_folder_names_the_repository(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="CLIP-FlanT5 folder not found: .*zhiqiulin/clip-flant5-xxl"):
        load_vqascore(tmp_path / "clip-flant5-xxl")


def test_folder_of_another_model_type(tmp_path: Path) -> None:
    folder = write_t5_folder(tmp_path / "flan-t5-xl", full_model=True)
    with pytest.raises(CheckpointError, match=r"describes a 't5' model, not CLIP-FlanT5; .*clip-flant5"):
        load_vqascore(folder)


def test_folder_without_tokenizer_lists_what_was_tried(tmp_path: Path) -> None:
    folder = write_clip_t5_folder(tmp_path / "clip-flant5-xl", "safetensors", tokenizer=False)
    with pytest.raises(CheckpointError, match="no usable T5 tokenizer .tried: .*clip-flant5-xl .no tokenizer.json"):
        load_vqascore(folder)
    tokenizer = write_t5_tokenizer(tmp_path / "t5_tokenizer", YES_WORDS)
    assert load_vqascore(folder, tokenizer_dirs=[tokenizer], dtype=torch.float32).token_ids("Yes").tolist() == [40, 1]


def test_checkpoint_without_the_vision_tower(tmp_path: Path) -> None:
    folder = write_clip_t5_folder(tmp_path / "clip-flant5-xl", "bin")
    state_dict = {k: v for k, v in clip_t5_state_dict().items() if not k.startswith("vision_tower.")}
    torch.save(state_dict, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="is not a CLIP-FlanT5 checkpoint: no vision_tower.vision_tower"):
        load_vqascore(folder)


def test_checkpoint_that_does_not_fit_its_config(tmp_path: Path) -> None:
    folder = write_clip_t5_folder(tmp_path / "clip-flant5-xl", "bin")
    config = json.loads((folder / "config.json").read_text()) | {"num_layers": 3}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"\(T5 part\) does not fit T5ForConditionalGeneration: .*missing"):
        load_vqascore(folder)
