"""The object-counting reward of RBF's quantity-aware task: GroundingDINO finds the prompt's objects, optionally
SAM refines each box into a mask, and the reward is minus the squared count errors (``rbf/corrector/reward_model/
counting.py``; models ``IDEA-Research/grounding-dino-base`` and ``facebook/sam-vit-base``).

The detector sees what the official code gives it: the decoded image converted to 8 bits (``ToPILImage``
truncates) and the class names joined as ``"balloons. bears."``. Its processor's image steps are written here in torch
so a batch runs at once on the model's device: the shorter side resized to 800 unless the longer would exceed 1333
(then the longer to 1333; bilinear; the sizes from the folder's ``preprocessor_config.json``), ImageNet
normalisation, an all-ones pixel mask (a batch shares one size).
Post-processing is :mod:`.count_filter`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from transformers import GroundingDinoForObjectDetection, PreTrainedTokenizerBase, SamModel

from ...kernels.boxes import boxes_to_masks
from ..checkpoint import CheckpointError
from ..hf_folder import from_pretrained_strict, load_tokenizer, read_hf_config
from . import check_images, module_device, module_dtype
from .count_filter import CountSettings, Detections, class_spans, count_per_class, detections_from_outputs, \
    drop_duplicate_boxes, filter_by_masks, keep_confident, rss_reward
from .count_prompt import parse_count_prompt
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize, resize, truncate_to_8bit
from .sam_masks import sam_masks

DEFAULT_EDGES = (800, 1333)  # GroundingDINO's processor: shortest and longest edge
DETECTOR_WHERE = "Hugging Face IDEA-Research/grounding-dino-base (the whole folder) into ComfyUI/models/rewards"
SAM_WHERE = "Hugging Face facebook/sam-vit-base (the whole folder) into ComfyUI/models/rewards"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


@dataclass(frozen=True)
class CountQuery:
    """A parsed counting prompt: class names, target counts ``(C,)`` and the detector's token ids ``(L,)`` with
    each class's token positions."""

    names: tuple[str, ...]
    targets: Tensor
    text: str
    input_ids: Tensor
    spans: tuple[tuple[int, ...], ...]


def detector_input_size(height: int, width: int, edges: tuple[int, int] = DEFAULT_EDGES) -> tuple[int, int]:
    """(h, w) for GroundingDINO: shorter side ``edges[0]`` (800) unless that makes the longer exceed ``edges[1]``
    (1333), then longer side ``edges[1]`` (the aspect ratio kept; the longer side truncated, the shorter rounded)."""
    (shortest, longest), short, long = edges, min(height, width), max(height, width)
    target = shortest if long * shortest <= longest * short else longest * short / long
    new_short = int(round(target))
    if new_short == short:
        return height, width
    new_long = int(target * long / short)
    return (new_short, new_long) if height <= width else (new_long, new_short)


class CountingReward:
    """GroundingDINO (+ SAM) counting: ``score`` is -RSS of the per-class counts against the prompt's."""

    def __init__(self, detector: GroundingDinoForObjectDetection, tokenizer: PreTrainedTokenizerBase,
                 sam: SamModel | None = None, settings: CountSettings = CountSettings(), name: str = "Counting",
                 edges: tuple[int, int] = DEFAULT_EDGES) -> None:
        self.detector = detector
        self.edges = edges
        self.tokenizer = tokenizer
        self.sam = sam
        self.settings = settings
        self.name = name
        self.modules: tuple[nn.Module, ...] = (detector,) if sam is None else (detector, sam)

    def query(self, prompt: str) -> CountQuery:
        """Parse ``prompt`` and tokenize the detector text; errors name the expected form."""
        items = parse_count_prompt(prompt)
        names = tuple(name for name, _ in items)
        text = ". ".join(names) + "."  # the official class_texts
        ids = self.tokenizer(text).input_ids
        if len(ids) > self.detector.config.max_text_len:
            raise ValueError(f"the counting prompt is too long for GroundingDINO: {len(ids)} tokens, at most "
                             f"{self.detector.config.max_text_len}")
        separator = self.tokenizer.convert_tokens_to_ids(".")
        specials = set(self.tokenizer.all_special_ids) - {self.tokenizer.unk_token_id}  # an unknown word is a name
        spans = class_spans(ids, separator_id=separator, special_ids=specials)
        if len(spans) != len(names):
            raise ValueError(f"the detector's tokenizer does not separate the object names of {prompt!r} "
                             f"({len(spans)} token groups for {len(names)} names)")
        targets = torch.tensor([count for _, count in items])
        return CountQuery(names, targets, text, torch.tensor(ids), tuple(map(tuple, spans)))

    def check_prompt(self, prompt: str) -> None:
        self.query(prompt)

    def preprocess(self, images: Tensor) -> Tensor:
        """IMAGE ``[B, H, W, C]`` -> 8-bit-truncated pixels ``(B, 3, H, W)`` in 0..1 on the detector's device."""
        return truncate_to_8bit(check_images(images.to(module_device(self.detector))))

    @torch.no_grad()
    def raw_outputs(self, pixels: Tensor, query: CountQuery) -> tuple[Tensor, Tensor]:
        """GroundingDINO on a batch: ``logits (B, Q, L)`` over the text tokens and ``pred_boxes (B, Q, 4)``."""
        batch, device = pixels.shape[0], module_device(self.detector)
        inputs = resize(pixels, detector_input_size(*pixels.shape[-2:], self.edges), "bilinear")
        inputs = normalize(inputs, IMAGENET_MEAN, IMAGENET_STD).to(module_dtype(self.detector))  # (B, 3, h, w)
        ids = query.input_ids.to(device).expand(batch, -1)  # (B, L)
        outputs = self.detector(pixel_values=inputs, input_ids=ids, attention_mask=torch.ones_like(ids),
                                token_type_ids=torch.zeros_like(ids),
                                pixel_mask=torch.ones((batch, *inputs.shape[-2:]), dtype=torch.long, device=device))
        return outputs.logits[..., : ids.shape[1]], outputs.pred_boxes

    def detect(self, images: Tensor, query: CountQuery) -> list[Detections]:
        """The counted detections of each image (on the CPU), after every filter of :mod:`.count_filter`."""
        pixels = self.preprocess(images)  # (B, 3, H, W)
        logits, boxes = self.raw_outputs(pixels, query)
        return [self.filter(logits[b].cpu(), boxes[b].cpu(), query, pixels[b]) for b in range(pixels.shape[0])]

    def filter(self, logits: Tensor, boxes: Tensor, query: CountQuery, pixels: Tensor) -> Detections:
        """One image's raw outputs ``(Q, L)``, ``(Q, 4)`` -> counted detections (the image ``(3, H, W)`` is for
        SAM and the mask size)."""
        size = tuple(pixels.shape[-2:])
        found = detections_from_outputs(logits, boxes, query.spans, size, self.settings)
        found = drop_duplicate_boxes(keep_confident(found, self.settings), self.settings)
        if len(found) == 0:
            return found
        masks = sam_masks(self.sam, pixels, found.boxes) if self.sam is not None else boxes_to_masks(found.boxes, *size)
        return filter_by_masks(found, masks, self.settings.coverage)

    def count(self, images: Tensor, prompt: str) -> Tensor:
        """Objects counted per image and class: ``(B, C)`` int64, classes in prompt order."""
        return self._count(images, self.query(prompt))

    def score(self, images: Tensor, prompt: str) -> Tensor:
        """-sum over classes of (target - count)^2: ``[B]`` float32 on the CPU, 0 when every count is right."""
        query = self.query(prompt)
        return rss_reward(self._count(images, query), query.targets)

    def _count(self, images: Tensor, query: CountQuery) -> Tensor:
        return torch.stack([count_per_class(found, len(query.names)) for found in self.detect(images, query)])


def load_counting(
    detector_folder: str | Path, *, sam_folder: str | Path | None = None, settings: CountSettings = CountSettings(),
    dtype: torch.dtype = torch.float32,
) -> CountingReward:
    """The counting reward from a GroundingDINO folder (model + BERT tokenizer) and, optionally, a SAM folder."""
    folder = Path(detector_folder)
    expected = f"the counting reward needs GroundingDINO: {DETECTOR_WHERE}"
    if not folder.is_dir():
        raise CheckpointError(f"GroundingDINO folder not found: {folder}; {expected}")
    read_hf_config(folder, model_types=("grounding-dino",), title="GroundingDINO", expected=expected)
    tokenizer = load_tokenizer([folder], files=TOKENIZER_FILES, title="GroundingDINO (BERT)",
                               where=f"the tokenizer files of {DETECTOR_WHERE}")
    detector = from_pretrained_strict(GroundingDinoForObjectDetection, folder, dtype=dtype, title="GroundingDINO")
    sam = None
    if sam_folder is not None:
        sam_path = Path(sam_folder)
        if not sam_path.is_dir():
            raise CheckpointError(f"SAM folder not found: {sam_path}; get {SAM_WHERE}")
        read_hf_config(sam_path, model_types=("sam",), title="SAM", expected=f"the SAM filter needs {SAM_WHERE}")
        sam = from_pretrained_strict(SamModel, sam_path, dtype=dtype, title="SAM")
    name = f"Counting[{folder.name}{' + ' + Path(sam_folder).name if sam_folder is not None else ''}]"
    return CountingReward(detector, tokenizer, sam, settings, name, _input_edges(folder))


def _input_edges(folder: Path) -> tuple[int, int]:
    """The processor's resize rule from ``preprocessor_config.json`` (``size``: shortest and longest edge), as the
    official ``AutoProcessor`` reads it; the release's 800 and 1333 when the file is absent."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return DEFAULT_EDGES
    try:
        size = json.loads(path.read_text(encoding="utf-8"))["size"]
        return int(size["shortest_edge"]), int(size["longest_edge"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} has no readable size.shortest_edge / size.longest_edge ({err!r})") from None
