"""VQAScore: how likely CLIP-FlanT5 answers "Yes" to "Does this figure show "<prompt>"?" for an image.

The reward of RBF's compositional text-to-image task (``rbf/corrector/reward_model/vqa_server.py`` calls
``t2v_metrics.get_score_model("clip-flant5-xxl")``), computed as t2v_metrics ``clip_t5_model.py`` does:

- question ``Does this figure show "{prompt}"? Please answer yes or no.``, answer ``Yes``, wrapped in the ``t5_chat``
  conversation: ``SYSTEM_MSG + " USER: <image>\\n" + question + " ASSISTANT: "``;
- the text is split at ``<image>`` and each chunk tokenized on its own with the default special tokens, so each ends
  in ``</s>`` (``mm_utils.t5_tokenizer_image_token``); the answer is ``[▁Yes, </s>]``;
- score = ``exp(-mean cross-entropy)`` over the answer tokens, i.e. the geometric mean of P(▁Yes) and
  P(</s> | ▁Yes). t2v_metrics resizes the embeddings to the tokenizer (``resize_token_embeddings(len(tokenizer))``,
  32100 for FLAN-T5), so the softmax runs over the tokenizer's entries only; so does this one.
- images: ``expand2square`` onto the CLIP mean colour (122, 116, 104), then the CLIP processor of the 336 px tower
  (bicubic resize, centre crop, CLIP normalisation). RBF converts its [0, 1] tensors with ``ToPILImage`` first, which
  truncates to 8 bits; :mod:`.preprocess` does the same in torch (see there for the resize).

The official scorer runs one image at a time in bf16 autocast; here a batch shares one question, so no padding is
involved and the batch gives the same scores as single images. The tokenizer is the folder's, through
``AutoTokenizer`` as in t2v_metrics (which asked for the sentencepiece class; transformers 5 only has the
``tokenizers``-backed T5 tokenizer, and the pack does not need sentencepiece).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import PreTrainedTokenizerBase

from ..checkpoint import CheckpointError
from ..hf_folder import load_tokenizer, read_folder_weights, read_hf_config
from . import check_images, module_device, require_text
from .clip_t5 import IMAGE_TOKEN, CLIPFlanT5, build_clip_flan_t5
from .preprocess import CLIP_MEAN, CLIP_STD, center_crop, normalize, pad_to_square, resize, shortest_side_size, \
    truncate_to_8bit

SYSTEM_MSG = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
              "detailed, and polite answers to the user's questions.")  # t2v_metrics constants.SYSTEM_MSG
QUESTION_TEMPLATE = 'Does this figure show "{}"? Please answer yes or no.'
ANSWER = "Yes"
IMAGE_PLACEHOLDER = "<image>"
CONTEXT_LEN = 2048  # the tokenizer's model_max_length in t2v_metrics; longer inputs are cut
PAD_FILL = tuple(int(m * 255) / 255 for m in CLIP_MEAN)  # expand2square background: (122, 116, 104) / 255
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")
WHERE_TO_GET = ("Hugging Face zhiqiulin/clip-flant5-xxl or zhiqiulin/clip-flant5-xl (the whole folder, with its "
                "tokenizer files) into ComfyUI/models/rewards")
EXPECTED = f"VQAScore needs a CLIP-FlanT5 folder: {WHERE_TO_GET}"


def format_question(prompt: str) -> str:
    """The encoder text for ``prompt`` (``t5_chat`` style), with the ``<image>`` placeholder."""
    question = QUESTION_TEMPLATE.format(prompt)
    return f"{SYSTEM_MSG} USER: {IMAGE_PLACEHOLDER}\n{question} ASSISTANT: "


class VQAScore:
    """The VQAScore reward of one CLIP-FlanT5 model (see the module docstring for the exact computation)."""

    def __init__(self, model: CLIPFlanT5, tokenizer: PreTrainedTokenizerBase, name: str) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.modules = (model,)

    def check_prompt(self, prompt: str) -> None:
        require_text(prompt, "VQAScore")

    def token_ids(self, text: str) -> Tensor:
        """``text`` tokenized chunk by chunk around ``<image>``, each chunk ending in ``</s>``: ``(L,)`` int64."""
        ids: list[int] = []
        for index, chunk in enumerate(text.split(IMAGE_PLACEHOLDER)):
            ids += ([IMAGE_TOKEN] if index else []) + list(self.tokenizer(chunk).input_ids)
        return torch.tensor(ids[:CONTEXT_LEN], dtype=torch.long)

    def preprocess(self, images: Tensor) -> Tensor:
        """IMAGE ``[B, H, W, C]`` -> CLIP pixels ``(B, 3, S, S)`` (S = 336 for the releases), see the module doc."""
        side = self.model.vision_tower.config.image_size
        pixels = pad_to_square(truncate_to_8bit(check_images(images)), PAD_FILL)  # (B, 3, L, L)
        pixels = resize(pixels, shortest_side_size(*pixels.shape[-2:], side), "bicubic")
        return normalize(center_crop(pixels, side), CLIP_MEAN, CLIP_STD)  # (B, 3, S, S)

    @torch.no_grad()
    def score(self, images: Tensor, prompt: str) -> Tensor:
        """``exp(-mean CE)`` of the answer "Yes" for each image: ``[B]`` float32 on the CPU, in (0, 1]."""
        question = self.token_ids(format_question(require_text(prompt, "VQAScore")))
        answer = self.token_ids(ANSWER)  # (A,) = [▁Yes, </s>]
        pixels = self.preprocess(images.to(module_device(self.model)))
        logits = self.model(question, pixels, answer).float()  # (B, A, vocab rows)
        logits = logits[..., : min(len(self.tokenizer), logits.shape[-1])]  # the resized head of t2v_metrics
        targets = answer.to(logits.device).expand(logits.shape[0], -1)  # (B, A)
        nll = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none").mean(dim=1)  # (B,)
        return torch.exp(-nll).cpu()


def load_vqascore(
    folder: str | Path, *, tokenizer_dirs: Sequence[str | Path] = (), dtype: torch.dtype = torch.bfloat16
) -> VQAScore:
    """VQAScore from a CLIP-FlanT5 folder (``config.json`` of ``model_type`` clip_t5, weights, tokenizer files).

    The tokenizer comes from the folder, else from the first usable of ``tokenizer_dirs`` (any FLAN-T5 / T5 v1.1
    tokenizer: the same sentencepiece vocabulary); it is loaded first so that a missing tokenizer is reported
    before gigabytes of weights are read. bf16 is the official precision.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"CLIP-FlanT5 folder not found: {folder}; {EXPECTED}")
    config = read_hf_config(folder, model_types=("clip_t5",), title="CLIP-FlanT5", expected=EXPECTED)
    tokenizer = load_tokenizer([folder, *map(Path, tokenizer_dirs)], files=TOKENIZER_FILES, title="T5",
                               where=f"the tokenizer files of {WHERE_TO_GET}")
    model = build_clip_flan_t5(config, read_folder_weights(folder), source=folder, dtype=dtype)
    if len(tokenizer) > model.language_model.config.vocab_size:
        raise CheckpointError(f"the tokenizer has {len(tokenizer)} tokens but {folder} only "
                              f"{model.language_model.config.vocab_size} embeddings: they do not belong together")
    return VQAScore(model, tokenizer, f"VQAScore[{folder.name}]")
