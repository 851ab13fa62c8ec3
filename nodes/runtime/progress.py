"""Progress reporting and interrupt checks for long loops.

Samplers take a plain callback ``(step, total, preview)``; :class:`Progress` is that callback. Inside ComfyUI it
drives ``comfy.utils.ProgressBar`` (sending a JPEG preview when one is given) and checks for a user interrupt,
raising ComfyUI's ``InterruptProcessingException`` so the loop unwinds through its ``finally`` blocks. Standalone it
logs every tenth of the way (Ctrl-C interrupts as usual).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from PIL import Image

from . import host

log = logging.getLogger("FlowAR")
PREVIEW_MAX_SIZE = 512


def check_interrupt() -> None:
    """Raise ComfyUI's interrupt exception if the user pressed cancel (no-op standalone)."""
    if host.AVAILABLE:
        host.model_management.throw_exception_if_processing_interrupted()


def preview_image(image: torch.Tensor) -> Image.Image:
    """A PIL preview of the first image of an IMAGE-like tensor ``[B,H,W,C]`` or ``[H,W,C]`` in 0..1."""
    first = image[0] if image.dim() == 4 else image  # (H, W, C)
    pixels = (first.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(pixels[..., :3]))


class Progress:
    """A sampler callback reporting ``step`` of ``total`` (steps counted from 1) for the node ``node_id``."""

    def __init__(self, total: int, *, label: str = "FlowAR", node_id: str | None = None) -> None:
        self.label = label
        self.bar = host.utils.ProgressBar(total, node_id=node_id) if host.AVAILABLE else None
        self._last_logged = -1

    def __call__(self, step: int, total: int, preview: torch.Tensor | None = None) -> None:
        check_interrupt()
        if self.bar is not None:
            shown = ("JPEG", preview_image(preview), PREVIEW_MAX_SIZE) if preview is not None else None
            self.bar.update_absolute(step, total, shown)
            return
        tenth = 10 * step // max(total, 1)
        if tenth != self._last_logged:
            self._last_logged = tenth
            log.info("%s: %d/%d", self.label, step, total)
