"""ARPG test helpers."""

from __future__ import annotations

from flowar.samplers.arpg.decode import DecodeSettings


def sampler_inputs(settings: DecodeSettings) -> dict:
    """The ARPG Sampler node's inputs for library ``settings`` (the node calls guidance ``cfg``), so a test drives
    the node exactly as ``train/arpg_eval.py`` drives the library."""
    return dict(steps=settings.steps, schedule=settings.schedule, cfg=settings.guidance,
                cfg_schedule=settings.cfg_schedule, temperature=settings.temperature, top_k=settings.top_k,
                top_p=settings.top_p)
