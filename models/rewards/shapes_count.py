"""The shape-count reward of the shapes world: the analyser (:mod:`..shapes_analyser`) counts the objects of each
(shape, colour) class and the score compares them with the caption, like RBF's counting reward (minus the squared
count errors) but exact and offline, with no weights: what the built-in models are searched and measured with.

Every class counts, named in the caption or not (wanted 0), and objects that fit no shape form one more class that
is never wanted, so a wrong colour, a wrong shape or a malformed blob all cost.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..shapes import parse_caption
from ..shapes_analyser import class_counts
from . import check_images
from .count_filter import rss_reward

MODES = ("squared_error", "exact")


class ShapesCountReward:
    """``score``: ``-sum_c (wanted_c - found_c)^2`` over the 12 classes and the unrecognised objects
    (``squared_error``, 0 is perfect), or 1.0 when every count is right else 0.0 (``exact``)."""

    modules: tuple[nn.Module, ...] = ()  # no weights

    def __init__(self, mode: str = "squared_error") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown shape-count mode {mode!r}; choose one of {', '.join(MODES)}")
        self.mode = mode
        self.name = "ShapesCount" if mode == "squared_error" else "ShapesCount[exact]"

    def check_prompt(self, prompt: str) -> None:
        parse_caption(prompt)

    def score(self, images: Tensor, prompt: str) -> Tensor:
        wanted = F.pad(parse_caption(prompt), (0, 1))  # (13,): the caption's counts, then 0 unrecognised objects
        check_images(images)  # refuses bad shapes and NaN, which would count as background
        errors = rss_reward(class_counts(images).cpu(), wanted)  # (B,) float32, <= 0
        return errors if self.mode == "squared_error" else (errors == 0).float()
