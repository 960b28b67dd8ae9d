"""Qwen2-VL's visual tokens."""
from __future__ import annotations

import math
from typing import Sequence

from udfs.visual_tokens.base import FrameSize, check_size, register_rule

# An image or a video is <|vision_start|> <|image_pad|>*n <|vision_end|> (<|video_pad|> for
# video): n = grid_t * (H/14) * (W/14) / 2², i.e. grid_t * (H/28) * (W/28) after smart_resize.
# Images have grid_t = 1; a video's frames are padded to an even count (the last frame repeats)
# and packed in temporal pairs: grid_t = ceil(T/2).


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 28 * 28 * 1280
) -> tuple[int, int]:
    """Qwen2-VL's smart_resize (transformers' image_processing_qwen2_vl): (height, width), multiples of factor."""
    aspect_ratio = max(height, width) / min(height, width)
    if aspect_ratio > 200:
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {aspect_ratio}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def qwen2vl_tokens(
    width: int,
    height: int,
    *,
    frames: int = 1,
    min_pixels: int = 56 * 56,
    max_pixels: int = 28 * 28 * 1280,
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
) -> int:
    """Tokens of one Qwen2-VL image (frames=1) or video clip of ``frames`` frames, wrappers included."""
    check_size(width, height)
    factor = patch_size * merge_size
    resized_h, resized_w = smart_resize(height, width, factor, min_pixels, max_pixels)
    grid_t = math.ceil(frames / temporal_patch_size)
    return grid_t * (resized_h // factor) * (resized_w // factor) + 2


def _qwen2vl_sequence(
    frame_sizes: Sequence[FrameSize],
    is_video: bool,
    *,
    min_pixels: int = 56 * 56,
    max_pixels: int = 28 * 28 * 1280,
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
) -> int:
    params = dict(
        min_pixels=min_pixels, max_pixels=max_pixels, patch_size=patch_size, merge_size=merge_size,
        temporal_patch_size=temporal_patch_size,
    )
    if is_video:
        # The processor stacks a video's frames into one tensor: they share the first frame's size.
        width, height = frame_sizes[0]
        return qwen2vl_tokens(width, height, frames=len(frame_sizes), **params)
    return sum(qwen2vl_tokens(w, h, **params) for w, h in frame_sizes)


register_rule("qwen2vl", qwen2vl_tokens, _qwen2vl_sequence)
