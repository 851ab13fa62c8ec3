"""Train the built-in text-to-image PixelFlow on the shapes world's captions, with a tiny T5 encoder trained
jointly and a word-level tokenizer, and save both in the official layouts.

Run from the repository root: ``python -m flowar.train.pixelflow_t2i --out builtin/pixelflow/shapes-t2i
--text-encoder-out builtin/text_encoders/shapes-t5 --steps 6000 --seed 0`` (options as the class-to-image script;
``--eval N`` prints the count accuracy of N samples). The transformer is saved as the class model is
(``model.safetensors`` + ``config.yaml``, ``cross_attention_dim`` = the T5 width); the encoder as a Hugging Face
folder (``config.json``, ``model.safetensors``, ``tokenizer.json``), which the pack's Flan-T5 loader loads with the
code that loads Flan-T5-XL. Seeding and the loop: :mod:`.loop`.

Two stages (16 -> 32 px): the final stage then starts at a third of the way from noise, where the layout (how many
objects, where) is still open, so a reward search run in it (the PixelFlow sampler searches its final stage) can
still change the count. Guidance for text models is constant over the stages, so any stage count takes the
sampler's defaults. Captions are dropped to the empty prompt for guidance, as the official pipeline's negative prompt.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch import Tensor, nn
from transformers import T5Config, T5EncoderModel

from ..models.pixelflow import PixelFlowConfig, PixelFlowModel
from ..models.shapes import CANVAS, CAPTIONS
from ..samplers.pixelflow.schedule import cascade_schedule
from .loop import run_arguments
from .pixelflow_objective import initialise
from .pixelflow_training import NUM_TRAIN_TIMESTEPS, PixelFlowTask, run, save_release
from .shapes_tokenizer import MAX_TOKENS, save_tokenizer, shapes_tokenizer

T5_WIDTH = 64
SHAPES_T5 = dict(d_model=T5_WIDTH, d_kv=16, num_heads=4, d_ff=128, num_layers=2, feed_forward_proj="gated-gelu",
                 relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
                 is_encoder_decoder=False, use_cache=False, tie_word_embeddings=False, pad_token_id=0, eos_token_id=1)
# Narrower and shallower than the class model (0.4 of its cost per model call): the quality benchmark spends about
# 250,000 calls on the search table and must finish in 30 minutes on 2 CPU cores.
SHAPES_T2I = PixelFlowConfig(num_attention_heads=4, attention_head_dim=16, depth=4, patch_size=2,
                             cross_attention_dim=T5_WIDTH, attention_bias=True)
SHAPES_T2I_STAGES = 2
PROMPTS = (*CAPTIONS, "")  # label k is caption k; the last one, the empty prompt, is the null label


def t5_config() -> T5Config:
    return T5Config(vocab_size=len(shapes_tokenizer()), **SHAPES_T5)


def t2i_task(config: PixelFlowConfig = SHAPES_T2I) -> PixelFlowTask:
    """Text-to-image: each world image is labelled with its caption's index in :data:`PROMPTS`; the tiny T5 encodes
    the labelled prompts, padded to the tokenizer's length with their mask, on every step (so it trains)."""
    tokens = shapes_tokenizer()(list(PROMPTS), padding="max_length", max_length=MAX_TOKENS, return_tensors="pt")
    ids, mask = tokens["input_ids"], tokens["attention_mask"]  # (49, L) each

    def build() -> nn.ModuleDict:
        model = PixelFlowModel(config)
        initialise(model)
        return nn.ModuleDict({"pixelflow": model, "text_encoder": T5EncoderModel(t5_config())})

    def condition(modules: nn.ModuleDict, labels: Tensor) -> dict[str, Tensor]:
        hidden = modules["text_encoder"](input_ids=ids[labels], attention_mask=mask[labels]).last_hidden_state
        return {"context": hidden, "context_mask": mask[labels]}  # (b, L, 64), (b, L)

    return PixelFlowTask(build=build, label=lambda sample: CAPTIONS.index(sample.caption),
                         null_label=len(CAPTIONS), condition=condition)


def save_text_encoder(encoder: T5EncoderModel, folder: Path) -> None:
    """The Hugging Face folder: ``config.json``, ``model.safetensors`` and the tokenizer files."""
    encoder.save_pretrained(folder, safe_serialization=True)
    save_tokenizer(folder)


def extra_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-encoder-out", type=Path, required=True,
                        help="folder for the tiny T5 (outside the PixelFlow model folders, which list every file)")


def main(argv: list[str] | None = None) -> None:
    args = run_arguments(__doc__.split("\n\n")[0], argv, extra_arguments)
    schedule = cascade_schedule(NUM_TRAIN_TIMESTEPS, SHAPES_T2I_STAGES)
    encoder_out = args.text_encoder_out

    def save(ema: nn.ModuleDict, _raw: nn.ModuleDict, folder: Path, provenance: dict) -> Path:
        save_text_encoder(ema["text_encoder"], encoder_out if folder == args.out else folder / "text_encoder")
        return save_release(ema["pixelflow"], schedule, folder, resolution=CANVAS,
                            provenance={"script": "train/pixelflow_t2i.py", **provenance})

    result = run(t2i_task(), schedule, args, "PixelFlow t2i", save)
    print(f"text encoder saved in {encoder_out}", flush=True)
    if args.eval:
        from ..models.flan_t5 import T5TextEncoder
        from ..tooling.pixelflow_eval import count_accuracy
        from ..tooling.accuracy import format_accuracy

        encoder = T5TextEncoder(result.ema["text_encoder"], shapes_tokenizer())
        print(format_accuracy(count_accuracy(result.ema["pixelflow"], encoder, schedule, samples=args.eval), "count"),
              flush=True)


if __name__ == "__main__":
    main()
