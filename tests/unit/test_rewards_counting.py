"""The counting reward: prompt parsing, box kernels, every post-processing step on synthetic detector outputs, the
torch preprocessing against the transformers processors, and the whole pipeline with a tiny random GroundingDINO
(and SAM) in the Hugging Face layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support.rewards import (
    DETECTOR_EDGES,
    one_thread,  # noqa: F401 - fixture
    smooth_images,
    write_clip_folder,
    write_grounding_dino_folder,
    write_sam_folder,
)
from transformers import AutoTokenizer, GroundingDinoImageProcessor, SamImageProcessor, SamProcessor

from flowar.kernels.boxes import batched_nms, box_iou, boxes_to_masks, cxcywh_to_xyxy, nms
from flowar.models.checkpoint import CheckpointError
from flowar.models.rewards.count_filter import (
    CountSettings,
    Detections,
    class_spans,
    count_per_class,
    detections_from_outputs,
    drop_duplicate_boxes,
    filter_by_masks,
    keep_confident,
    rss_reward,
)
from flowar.models.rewards.count_prompt import parse_count_prompt
from flowar.models.rewards.counting import CountingReward, detector_input_size, load_counting
from flowar.models.rewards.sam_masks import sam_inputs, upscale_masks

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "two balloons, three red bears"
EVERYTHING = CountSettings(box_threshold=0.0, text_threshold=0.0, relative_keep=0.0, absolute_keep=0.0)


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_grounding_dino_folder(tmp_path_factory.mktemp("rewards") / "grounding-dino-base")


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sam_folder(tmp_path_factory.mktemp("rewards") / "sam-vit-base")


@pytest.fixture(scope="module")
def reward(detector_dir: Path) -> CountingReward:
    return load_counting(detector_dir)


def detections(boxes: list, scores: list, labels: list) -> Detections:
    return Detections(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), torch.tensor(labels))


# ---- prompts ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt,expected", [
    ("seven balloons, four bears", [("balloons", 7), ("bears", 4)]),
    ("6 airplanes; 7 camels.", [("airplanes", 6), ("camels", 7)]),
    ("3 cats and a dog", [("cats", 3), ("dog", 1)]),
    ("twenty one balloons, twenty-two Bears", [("balloons", 21), ("Bears", 22)]),
    ("two salt and pepper shakers and 4 cups", [("salt and pepper shakers", 2), ("cups", 4)]),
    ("Ninety-nine red balloons", [("red balloons", 99)]),
    ("an apple, zero pears, 12 plums", [("apple", 1), ("pears", 0), ("plums", 12)]),
])
def test_counting_prompts_are_parsed(prompt: str, expected: list) -> None:
    assert parse_count_prompt(prompt) == expected


@pytest.mark.parametrize("prompt,message", [
    ("", "the counting prompt is empty"),
    ("balloons", "cannot read 'balloons' .* e.g. \"seven balloons, four bears\""),
    ("seven balloons, bears", "cannot read 'bears'"),
    ("hundred balloons", "cannot read 'hundred balloons'"),
    ("two cats, 3 Cats", "'Cats' is listed twice"),
    ("two st. bernards", "contains '.'"),
])
def test_unparsable_counting_prompts_say_what_is_expected(prompt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_count_prompt(prompt)


# ---- box kernels ------------------------------------------------------------------------------------------------
def brute_iou(a: list, b: list) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def test_box_conversion_and_iou() -> None:
    assert cxcywh_to_xyxy(torch.tensor([[0.5, 0.5, 0.2, 0.4]]))[0].tolist() == pytest.approx([0.4, 0.3, 0.6, 0.7])
    boxes = torch.rand(6, 2, generator=torch.Generator().manual_seed(0)) * 50
    boxes = torch.cat([boxes, boxes + torch.rand(6, 2, generator=torch.Generator().manual_seed(1)) * 40], 1).tolist()
    boxes.append([5.0, 5.0, 5.0, 9.0])  # degenerate: IoU 0 with everything, even itself
    expected = [[brute_iou(a, b) for b in boxes] for a in boxes]
    torch.testing.assert_close(box_iou(torch.tensor(boxes), torch.tensor(boxes)), torch.tensor(expected))


def test_nms_keeps_the_best_of_each_overlapping_group() -> None:
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9], [21, 21, 30, 30.0]])
    scores = torch.tensor([0.8, 0.9, 0.5, 0.7, 0.6])
    assert nms(boxes, scores, 0.5).tolist() == [1, 4]  # 0 and 3 overlap 1; 2 overlaps 4
    assert nms(boxes, scores, 0.95).tolist() == [1, 0, 3, 4, 2]  # nothing overlaps that much: sorted by score
    assert batched_nms(boxes, scores, torch.tensor([0, 0, 0, 1, 0]), 0.5).tolist() == [1, 3, 4]  # 3 is its own class
    assert nms(boxes[:0], scores[:0], 0.5).numel() == 0
    assert batched_nms(boxes[:0], scores[:0], scores[:0], 0.5).numel() == 0


def test_boxes_become_masks_by_pixel_centres() -> None:
    masks = boxes_to_masks(torch.tensor([[1.0, 0.4, 3.0, 2.6], [0.0, 0.0, 0.4, 0.4]]), 4, 5)  # (2, 4, 5)
    assert masks[0].nonzero().tolist() == [[0, 1], [0, 2], [1, 1], [1, 2], [2, 1], [2, 2]]
    assert not masks[1].any()  # covers no pixel centre


# ---- post-processing on synthetic outputs -----------------------------------------------------------------------
def test_class_spans_split_at_separators_and_special_tokens() -> None:
    ids = [101, 7, 12, 1012, 11, 8, 1012, 102]  # [CLS] balloon ##s . red bears . [SEP]
    assert class_spans(ids, separator_id=1012, special_ids={101, 102}) == [[1, 2], [4, 5]]


def test_each_query_takes_the_class_of_its_best_token() -> None:
    spans = [[1, 2], [4, 5]]
    logits = torch.full((4, 8), -9.0)
    logits[0, 2] = 3.0  # a sub-word of class 0: the official exact-string match would lose it
    logits[1, 5], logits[1, 1] = 2.0, 1.0  # class 1 wins over a weaker class-0 token
    logits[2, 4] = -1.5  # sigmoid 0.18: under the 0.2 thresholds
    logits[3, 3], logits[3, 0] = 5.0, 5.0  # only "." and [CLS]: no class at all
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]] * 4)  # (cx, cy, w, h) normalised
    found = detections_from_outputs(logits, boxes, spans, (100, 200), CountSettings())
    assert found.labels.tolist() == [0, 1]
    torch.testing.assert_close(found.scores, torch.tensor([3.0, 2.0]).sigmoid())
    assert found.boxes[0].tolist() == pytest.approx([80.0, 30.0, 120.0, 70.0])  # x by width 200, y by height 100


def test_official_per_class_score_rule() -> None:
    found = detections([[0, 0, 1, 1]] * 5, [0.9, 0.5, 0.3, 0.3, 0.25], [0, 0, 0, 1, 1])
    kept = keep_confident(found, CountSettings())
    # class 0: > 0.54 (0.6 x 0.9) or > 0.32 keeps 0.9 and 0.5; class 1: > 0.18 keeps both
    assert kept.scores.tolist() == pytest.approx([0.9, 0.5, 0.3, 0.25])
    assert len(keep_confident(found.select(torch.tensor([], dtype=torch.long)), CountSettings())) == 0


def test_duplicate_boxes_within_and_across_classes() -> None:
    found = detections([[0, 0, 10, 10], [1, 0, 10, 10], [0, 0, 10, 10], [30, 30, 40, 40], [31, 33, 40, 42]],
                       [0.6, 0.5, 0.7, 0.4, 0.45], [0, 0, 1, 1, 0])
    kept = drop_duplicate_boxes(found, CountSettings())
    # 1 duplicates 0 (same class, IoU 0.9); 0 duplicates 2 (other class, IoU 1 > 0.8); 3 and 4 overlap 0.5 only
    assert sorted(kept.scores.tolist()) == pytest.approx([0.4, 0.45, 0.7])
    off = drop_duplicate_boxes(found, CountSettings(nms_iou=1.0, cross_class_iou=1.0))
    assert len(off) == 5  # the official pipeline: no suppression at all


def test_official_mask_rules() -> None:
    found = detections(
        [[0, 0, 4, 4], [4, 0, 8, 4], [0, 0, 8, 4], [0, 4, 8, 8], [1, 5, 7, 8], [9, 9, 9, 9]],
        [0.5, 0.5, 0.9, 0.8, 0.7, 0.9], [0, 0, 0, 1, 0, 1])
    masks = boxes_to_masks(found.boxes, 10, 10)
    counted = filter_by_masks(found, masks, 0.5)
    # 2 is the union of 0 and 1 (same class, no new pixels): rejected as a group box;
    # 4 lies inside 3, which scores higher for another class: not counted; 5 has an empty mask
    assert sorted(counted.boxes[:, 0].tolist()) == [0.0, 0.0, 4.0]
    assert count_per_class(counted, 2).tolist() == [2, 1]


def test_reward_is_minus_the_squared_count_errors() -> None:
    scores = rss_reward(torch.tensor([[2, 1], [7, 4]]), torch.tensor([7, 4]))
    assert scores.tolist() == [-34.0, 0.0] and scores.dtype == torch.float32


# ---- preprocessing against the transformers processors ----------------------------------------------------------
@pytest.mark.parametrize("size", [(96, 128), (1024, 1024), (333, 777), (1000, 100), (801, 1199), (37, 41)])
def test_detector_size_rule_matches_the_processor(size: tuple[int, int]) -> None:
    image = Image.fromarray(np.zeros((*size, 3), np.uint8))
    expected = GroundingDinoImageProcessor()(images=image, return_tensors="pt")["pixel_values"].shape[-2:]
    assert detector_input_size(*size) == tuple(expected)  # the release's 800 / 1333


def test_detector_inputs_match_the_processor(reward: CountingReward, detector_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    images = smooth_images(1, 60, 80)
    pil = Image.fromarray(np.floor(images[0].numpy() * 255).astype(np.uint8))  # ToPILImage truncates
    processor = GroundingDinoImageProcessor(size=DETECTOR_EDGES)
    expected = processor(images=pil, return_tensors="pt")["pixel_values"]  # (1, 3, 96, 128)
    seen = {}
    forward = reward.detector.forward
    monkeypatch.setattr(reward.detector, "forward", lambda **inputs: seen.update(inputs) or forward(**inputs))
    reward.raw_outputs(reward.preprocess(images), reward.query(PROMPT))
    assert seen["pixel_values"].shape == expected.shape and seen["pixel_mask"].all()
    assert (seen["pixel_values"] - expected).abs().max() < 2 / 255 / 0.224
    tokens = AutoTokenizer.from_pretrained(detector_dir)("balloons. red bears.", return_tensors="pt")
    assert seen["input_ids"].tolist() == tokens["input_ids"].tolist()


def test_sam_steps_match_the_processor(sam_dir: Path) -> None:
    images = smooth_images(1, 40, 56)
    pixels = torch.floor(images[0].permute(2, 0, 1) * 255) / 255  # (3, 40, 56)
    boxes = torch.tensor([[1.0, 2.0, 30.0, 20.0], [5.0, 5.0, 50.0, 35.0]])
    processor = SamProcessor(image_processor=SamImageProcessor(size={"longest_edge": 64},
                                                               pad_size={"height": 64, "width": 64}))
    pil = Image.fromarray((pixels.permute(1, 2, 0) * 255).round().byte().numpy())
    expected = processor(images=pil, input_boxes=[boxes.tolist()], return_tensors="pt")
    ours, our_boxes = sam_inputs(pixels, boxes, 64)
    assert ours.shape == expected["pixel_values"].shape == (1, 3, 64, 64)
    assert (ours - expected["pixel_values"]).abs().max() < 2 / 255 / 0.224
    torch.testing.assert_close(our_boxes, expected["input_boxes"].float())
    logits = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    official = processor.post_process_masks(logits[None], expected["original_sizes"],
                                            expected["reshaped_input_sizes"])[0]  # (2, 3, 40, 56) bool
    assert torch.equal(upscale_masks(logits, (46, 64), (40, 56), 64), official.any(dim=1))


# ---- the whole pipeline ---------------------------------------------------------------------------------------------
def test_counts_and_score_from_a_tiny_grounding_dino(reward: CountingReward) -> None:
    images = smooth_images(3, 96, 128)
    counts = reward.count(images, PROMPT)
    assert counts.shape == (3, 2) and counts.dtype == torch.int64
    scores = reward.score(images, PROMPT)
    assert scores.dtype == torch.float32
    assert scores.tolist() == (-((torch.tensor([2, 3]) - counts) ** 2).sum(1)).tolist()
    assert torch.equal(reward.count(images[1:2], PROMPT), counts[1:2])  # a batch counts like single images


def test_filters_decide_what_is_counted(detector_dir: Path) -> None:
    """With every threshold at 0 and no suppression, each query counts for its best class once its box is new."""
    loose = load_counting(detector_dir, settings=EVERYTHING)
    images = smooth_images(2, 96, 128)
    query = loose.query(PROMPT)
    logits, boxes = loose.raw_outputs(loose.preprocess(images), query)
    per_class = torch.stack([logits[..., list(span)].amax(-1) for span in query.spans], -1)  # (B, Q, 2)
    upper = torch.stack([torch.bincount(per_class[b].argmax(-1), minlength=2) for b in range(2)])
    counts = loose.count(images, PROMPT)
    assert (counts <= upper).all() and counts.sum() > 0
    strict = load_counting(detector_dir, settings=CountSettings(box_threshold=1.0, text_threshold=1.0))
    assert strict.count(images, PROMPT).sum() == 0 and strict.score(images, PROMPT).tolist() == [-13.0, -13.0]


def test_sam_masks_serve_the_same_rules(detector_dir: Path, sam_dir: Path) -> None:
    with_sam = load_counting(detector_dir, sam_folder=sam_dir, settings=EVERYTHING)
    assert with_sam.name == "Counting[grounding-dino-base + sam-vit-base]" and len(with_sam.modules) == 2
    counts = with_sam.count(smooth_images(2, 96, 128), PROMPT)
    assert counts.shape == (2, 2) and (counts >= 0).all()


# ---- errors ---------------------------------------------------------------------------------------------------------
def test_unparsable_prompt_fails_before_the_detector_runs(reward: CountingReward) -> None:
    with pytest.raises(ValueError, match="e.g. \"seven balloons, four bears\""):
        reward.check_prompt("lots of balloons")
    with pytest.raises(ValueError, match="cannot read 'balloons'"):
        reward.score(smooth_images(1, 96, 128), "balloons")


def test_prompt_too_long_for_the_detector(reward: CountingReward) -> None:
    prompt = ", ".join(f"{n} {'red ' * n}cats" for n in range(1, 8))  # 7 names, 42 tokens
    with pytest.raises(ValueError, match="too long for GroundingDINO: .* at most 32"):
        reward.check_prompt(prompt)


def test_missing_and_wrong_folders(tmp_path: Path, detector_dir: Path) -> None:
    with pytest.raises(CheckpointError, match="GroundingDINO folder not found: .*IDEA-Research/grounding-dino-base"):
        load_counting(tmp_path / "grounding-dino-base")
    clip = write_clip_folder(tmp_path / "clip")
    with pytest.raises(CheckpointError, match="describes a 'clip' model, not GroundingDINO"):
        load_counting(clip)
    with pytest.raises(CheckpointError, match="describes a 'clip' model, not SAM; .*facebook/sam-vit-base"):
        load_counting(detector_dir, sam_folder=clip)
    with pytest.raises(CheckpointError, match="SAM folder not found: .*facebook/sam-vit-base"):
        load_counting(detector_dir, sam_folder=tmp_path / "sam")


def test_unknown_words_still_name_a_class(reward: CountingReward) -> None:
    query = reward.query("two balloons, a bear")  # "bear" is not in the tiny vocabulary: [UNK]
    assert query.names == ("balloons", "bear") and query.targets.tolist() == [2, 1]
    assert query.spans == ((1,), (3,)) and query.input_ids[3] == reward.tokenizer.unk_token_id
