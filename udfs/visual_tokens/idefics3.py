"""Idefics3's visual tokens."""
from __future__ import annotations

import math
from typing import Sequence

from udfs.visual_tokens.base import FrameSize, check_size, joined, register_rule

# Port of transformers' Idefics3ImageProcessor (resize, resize_for_vision_encoder, split_images)
# and Idefics3Processor's prompt expansion:
#   not split:  <fake_token_around_image><global-img><image>*169<fake_token_around_image>  = 169 + 3
#   split into rows x cols crops:
#     per crop  <fake_token_around_image><row_r_col_c><image>*169                         = 169 + 2
#     per row   "\n"                                                                     = 1
#     then      "\n"<fake_token_around_image><global-img><image>*169<fake_token_around_image>
#   Llama 3 merges the last row's "\n" with the global block's "\n" into one "\n\n" token, so the
#   global block costs 169 + 3 (transformers' _get_num_multimodal_tokens counts the same).
IDEFICS3_MAX_IMAGE_SIZE = 4096  # the processor's absolute cap on either side


def _idefics3_rescale_to_max_len(height: int, width: int, max_len: int) -> tuple[int, int]:
    # Sets the longest side to max_len, up- or downscaling, and keeps the other side even.
    aspect_ratio = width / height
    if width >= height:
        width = max_len
        height = int(width / aspect_ratio)
        if height % 2 != 0:
            height += 1
    else:
        height = max_len
        width = int(height * aspect_ratio)
        if width % 2 != 0:
            width += 1
    return max(height, 1), max(width, 1)


def _idefics3_scale_below(height: int, width: int, max_len: int) -> tuple[int, int]:
    aspect_ratio = width / height
    if width >= height and width > max_len:
        width = max_len
        height = int(width / aspect_ratio)
    elif height > width and height > max_len:
        height = max_len
        width = int(height * aspect_ratio)
    return max(height, 1), max(width, 1)


def _idefics3_resize_for_vision_encoder(height: int, width: int, crop: int) -> tuple[int, int]:
    aspect_ratio = width / height
    if width >= height:
        width = math.ceil(width / crop) * crop
        height = math.ceil(int(width / aspect_ratio) / crop) * crop
    else:
        height = math.ceil(height / crop) * crop
        width = math.ceil(int(height * aspect_ratio) / crop) * crop
    return height, width


def idefics3_grid(
    width: int,
    height: int,
    *,
    do_image_splitting: bool = False,
    longest_edge: int | None = 4 * 364,
    max_image_size: int = 364,
) -> tuple[int, int]:
    """The (rows, cols) crop grid of an image; (0, 0) when it is not split.

    ``longest_edge`` is the processor's ``size["longest_edge"]`` resize, applied before
    splitting; it upscales small images too. None means ``do_resize=False``.
    """
    check_size(width, height)
    if not do_image_splitting:
        return 0, 0
    if longest_edge:
        height, width = _idefics3_rescale_to_max_len(height, width, longest_edge)
        height, width = _idefics3_scale_below(height, width, IDEFICS3_MAX_IMAGE_SIZE)
    height, width = _idefics3_resize_for_vision_encoder(height, width, max_image_size)
    if height > max_image_size or width > max_image_size:
        return math.ceil(height / max_image_size), math.ceil(width / max_image_size)
    return 0, 0


def idefics3_tokens(
    width: int,
    height: int,
    *,
    image_seq_len: int = 169,
    do_image_splitting: bool = False,
    longest_edge: int | None = 4 * 364,
    max_image_size: int = 364,
) -> int:
    """Tokens of one Idefics3 image: crops with their row/col tags, row breaks, the global image."""
    rows, cols = idefics3_grid(
        width, height, do_image_splitting=do_image_splitting, longest_edge=longest_edge,
        max_image_size=max_image_size,
    )
    global_block = image_seq_len + 3
    return rows * (cols * (image_seq_len + 2) + 1) + global_block


def _idefics3_sequence(
    frame_sizes: Sequence[FrameSize],
    is_video: bool,
    *,
    image_seq_len: int = 169,
    do_image_splitting: bool = False,
    longest_edge: int | None = 4 * 364,
    max_image_size: int = 364,
    separator_tokens: int = 0,
) -> int:
    blocks = [
        idefics3_tokens(
            w, h, image_seq_len=image_seq_len, do_image_splitting=do_image_splitting,
            longest_edge=longest_edge, max_image_size=max_image_size,
        )
        for w, h in frame_sizes
    ]
    return joined(blocks, separator_tokens)


register_rule("idefics3", idefics3_tokens, _idefics3_sequence)
