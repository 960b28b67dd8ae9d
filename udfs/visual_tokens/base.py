"""The visual-token rule registry: each rule is registered by name with two functions.

- ``per_frame(width, height, **params) -> int``: the tokens of one image or frame, wrappers included;
- ``sequence(frame_sizes, is_video, **params) -> int``: the tokens of all frames of one sample. It
  differs from a sum of ``per_frame`` where the model does: Qwen2-VL packs video frames in
  temporal pairs, MiniCPM-V numbers its images, and frame blocks may be joined by separators.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

FrameSize = tuple[int, int]  # (width, height)
VIDEO_KINDS = ("video", "frames_dir")
IMAGE_KINDS = ("image", "images")
OVERRIDE_KEYS = ("video", "image")


@dataclass(frozen=True)
class VisualRule:
    per_frame: Callable[..., int]
    sequence: Callable[..., int]

    def param_names(self) -> set[str]:
        """The keyword parameters a profile may set for this rule."""
        return {p.name for p in self._keyword_parameters()}

    def required_params(self) -> set[str]:
        """The keyword parameters a profile must set for this rule (they have no default)."""
        return {p.name for p in self._keyword_parameters() if p.default is inspect.Parameter.empty}

    def _keyword_parameters(self) -> list[inspect.Parameter]:
        parameters = inspect.signature(self.sequence).parameters.values()
        return [p for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


RULES: dict[str, VisualRule] = {}


def register_rule(name: str, per_frame: Callable[..., int], sequence: Callable[..., int]) -> None:
    RULES[name] = VisualRule(per_frame=per_frame, sequence=sequence)


def check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")


def joined(blocks: list[int], separator_tokens: int) -> int:
    return sum(blocks) + separator_tokens * max(len(blocks) - 1, 0)
