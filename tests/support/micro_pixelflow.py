"""Micro PixelFlow models (2 stages, 16 -> 32 px) and a tiny T5 trained two steps, for the benchmark and demo
tests."""

from __future__ import annotations

from pathlib import Path

from flowar.models.pixelflow import PixelFlowConfig
from flowar.samplers.pixelflow.schedule import cascade_schedule
from flowar.train.loop import TrainSettings
from flowar.train.pixelflow_c2i import c2i_task
from flowar.train.pixelflow_t2i import save_text_encoder, t2i_task
from flowar.train.pixelflow_training import save_release, train

SCHEDULE = cascade_schedule(1000, 2)  # 16 -> 32 px, as the built-in t2i model
MICRO = dict(num_attention_heads=2, attention_head_dim=8, depth=1, patch_size=2)


def micro_models(folder: Path) -> list[str]:
    """Micro c2i and t2i PixelFlow models (2 stages) and a tiny T5, trained 2 steps; their bench/demo options."""
    quick = TrainSettings(batch_size=4)
    c2i = train(c2i_task(PixelFlowConfig(**MICRO, num_classes=12)), SCHEDULE, seed=0, steps=2, settings=quick,
                log=lambda _: None)
    t2i = train(t2i_task(PixelFlowConfig(**MICRO, cross_attention_dim=64, num_classes=0)), SCHEDULE, seed=0,
                steps=2, settings=quick, log=lambda _: None)
    c2i_weights = save_release(c2i.ema["pixelflow"], SCHEDULE, folder / "c2i", resolution=32, provenance={})
    t2i_weights = save_release(t2i.ema["pixelflow"], SCHEDULE, folder / "t2i", resolution=32, provenance={})
    save_text_encoder(t2i.ema["text_encoder"], folder / "t5")
    return ["--c2i", str(c2i_weights), "--t2i", str(t2i_weights), "--text-encoder", str(folder / "t5")]
