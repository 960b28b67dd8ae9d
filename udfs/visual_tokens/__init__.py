"""How many LLM tokens the images or frames of a sample cost, per model family (no weights needed).

One module per rule (``minicpmv.py``, ``idefics3.py``, ``qwen2vl.py``), registered by name in
``base.RULES``; a new model family is one module plus its import below.

A model profile's ``visual`` mapping names the rule and its parameters; a nested ``video`` or
``image`` mapping overrides parameters for that media kind (e.g. MiniCPM-V 2.6 turns image ids
off for video, Qwen2-VL's video processor has its own pixel bounds).
"""
from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

from udfs.visual_tokens import idefics3, minicpmv, qwen2vl  # noqa: F401 - importing registers the rules
from udfs.visual_tokens.base import IMAGE_KINDS, OVERRIDE_KEYS, RULES, VIDEO_KINDS, FrameSize
from udfs.visual_tokens.idefics3 import idefics3_grid, idefics3_tokens
from udfs.visual_tokens.minicpmv import minicpmv_grid, minicpmv_tokens
from udfs.visual_tokens.qwen2vl import qwen2vl_tokens, smart_resize

__all__ = [
    "IMAGE_KINDS", "VIDEO_KINDS", "idefics3_grid", "idefics3_tokens", "minicpmv_grid", "minicpmv_tokens",
    "qwen2vl_tokens", "smart_resize", "validate_visual", "visual_tokens",
]


def validate_visual(visual: Any) -> None:
    """Check a profile's ``visual`` mapping; errors start with the offending key (``visual.rule: ...``)."""
    if not isinstance(visual, Mapping):
        raise ValueError(f"visual: must be a mapping with a 'rule', got {type(visual).__name__}")
    rule_name = visual.get("rule")
    if rule_name is None:
        raise ValueError("visual.rule: missing key")
    if not isinstance(rule_name, str) or rule_name not in RULES:
        raise ValueError(f"visual.rule: unknown rule {rule_name!r} (known: {', '.join(sorted(RULES))})")
    allowed = RULES[rule_name].param_names()
    _check_params({k: v for k, v in visual.items() if k not in ("rule", *OVERRIDE_KEYS)}, allowed, "visual")
    for kind in OVERRIDE_KEYS:
        if kind in visual:
            override = visual[kind]
            if not isinstance(override, Mapping):
                raise ValueError(f"visual.{kind}: must be a mapping of parameters")
            _check_params(override, allowed, f"visual.{kind}")
    missing = sorted(RULES[rule_name].required_params() - set(visual))
    if missing:
        raise ValueError(f"visual.{missing[0]}: missing key (required by rule {rule_name!r})")


def _check_params(params: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key, value in params.items():
        if key not in allowed:
            raise ValueError(f"{where}.{key}: unknown parameter (known: {', '.join(sorted(allowed))})")
        if value is not None and not isinstance(value, (int, float)):  # bools are ints
            raise ValueError(f"{where}.{key}: must be a number or boolean, got {value!r}")


def visual_tokens(profile_visual: Mapping[str, Any], frame_sizes: Sequence[Sequence[int]], media_kind: str) -> int:
    """Visual tokens of all images or frames of one sample.

    ``frame_sizes`` are (width, height) pairs; ``media_kind`` is "video"/"frames_dir" (the frames
    of one clip) or "image"/"images" (independent images).
    """
    if media_kind in VIDEO_KINDS:
        is_video = True
    elif media_kind in IMAGE_KINDS:
        is_video = False
    else:
        raise ValueError(f"media kind {media_kind!r} has no visual tokens")
    if not frame_sizes:
        return 0
    params = {k: v for k, v in profile_visual.items() if k not in ("rule", *OVERRIDE_KEYS)}
    params.update(profile_visual.get("video" if is_video else "image") or {})
    sizes = tuple((int(size[0]), int(size[1])) for size in frame_sizes)
    return _sequence_tokens(profile_visual["rule"], tuple(sorted(params.items())), sizes, is_video)


# Samples of one dataset share a few frame sizes and frame counts: the rules run once for each.
@functools.lru_cache(maxsize=65536)
def _sequence_tokens(rule: str, params: tuple[tuple[str, Any], ...], sizes: tuple[FrameSize, ...],
                     is_video: bool) -> int:
    return RULES[rule].sequence(list(sizes), is_video, **dict(params))
