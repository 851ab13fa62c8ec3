"""The word-level tokenizer of the built-in tiny T5: one token per caption word of the shapes world, in T5's
special-token convention (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2; ``</s>`` appended to every text), lower-cased,
punctuation dropped, split on whitespace. Saved as a Hugging Face ``tokenizer.json`` folder, so that the pack loads it
with ``AutoTokenizer`` exactly as it loads Flan-T5's.
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordLevel
from transformers import PreTrainedTokenizerFast

from ..models.shapes import CAPTIONS

SPECIAL_TOKENS = ("<pad>", "</s>", "<unk>")  # ids 0, 1, 2 as in T5
MAX_TOKENS = 16  # tokenizer model_max_length: captions take at most 4 tokens with </s>


def caption_words() -> list[str]:
    """Every word of the world's captions, in order of first appearance."""
    return list(dict.fromkeys(word for text in CAPTIONS for word in text.split()))


def shapes_tokenizer() -> PreTrainedTokenizerFast:
    """The tokenizer: vocabulary = the special tokens then :func:`caption_words`; other words become ``<unk>``."""
    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS, *caption_words()])}
    core = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    core.normalizer = normalizers.Sequence([normalizers.Lowercase(), normalizers.Replace(Regex(r"[^\w\s]"), " ")])
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", vocab["</s>"])])
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=MAX_TOKENS)


def save_tokenizer(folder: Path) -> None:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``folder``. The config names the class as
    ``PreTrainedTokenizerFast``, which every transformers version since 4.x resolves (5.x writes its own
    ``TokenizersBackend`` alias, unknown to 4.x)."""
    tokenizer = shapes_tokenizer()
    tokenizer.save_pretrained(folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
