"""MiniCPM-V's visual tokens (Llama3-V 2.5, V 2.6)."""
from __future__ import annotations

import math
from typing import Sequence

from udfs.visual_tokens.base import FrameSize, check_size, joined, register_rule

# Port of MiniCPMVImageProcessor.get_sliced_grid / get_slice_image_placeholder. An image becomes
#   <image> <unk>*query_num </image>                       the downsized source image
#   then, when sliced into cols x rows:
#   rows of cols x (<slice> <unk>*query_num </slice>), rows joined by "\n"
# with 2.6 optionally prefixing <image_id>{index}</image_id>. <image>, </image>, <slice>,
# </slice>, <image_id>, </image_id> and <unk> are single tokens; "\n" between two special tokens
# is one token; the index digits are one token each (Qwen2 splits numbers digit by digit).


def minicpmv_grid(
    width: int, height: int, *, max_slice_nums: int, scale_resolution: int = 448
) -> tuple[int, int] | None:
    """The (cols, rows) slice grid of an image, or None when it stays one image."""
    check_size(width, height)
    log_ratio = math.log(width / height)
    ratio = width * height / (scale_resolution * scale_resolution)
    multiple = min(math.ceil(ratio), max_slice_nums)
    if multiple <= 1:
        return None
    candidate_nums = [n for n in (multiple - 1, multiple, multiple + 1) if n != 1 and n <= max_slice_nums]
    candidate_grids = [(m, n // m) for n in candidate_nums for m in range(1, n + 1) if n % m == 0]
    best_grid, min_error = (1, 1), float("inf")
    for grid in candidate_grids:  # strict "<": the first grid wins ties, as in the original
        error = abs(log_ratio - math.log(grid[0] / grid[1]))
        if error < min_error:
            best_grid, min_error = grid, error
    return best_grid


def minicpmv_tokens(
    width: int,
    height: int,
    *,
    query_num: int,
    max_slice_nums: int = 9,
    scale_resolution: int = 448,
    use_image_id: bool = False,
    image_index: int = 0,
) -> int:
    """Tokens of one MiniCPM-V image: source block, optional image id, slice blocks and row breaks."""
    block = query_num + 2
    tokens = block
    if use_image_id:
        tokens += 2 + len(str(image_index))
    grid = minicpmv_grid(width, height, max_slice_nums=max_slice_nums, scale_resolution=scale_resolution)
    if grid is not None:
        cols, rows = grid
        tokens += cols * rows * block + (rows - 1)
    return tokens


def _minicpmv_sequence(
    frame_sizes: Sequence[FrameSize],
    is_video: bool,
    *,
    query_num: int,
    max_slice_nums: int = 9,
    scale_resolution: int = 448,
    use_image_id: bool = False,
    separator_tokens: int = 0,
) -> int:
    # Each frame of a video is one MiniCPM-V image, numbered like images are.
    blocks = [
        minicpmv_tokens(
            w, h, query_num=query_num, max_slice_nums=max_slice_nums, scale_resolution=scale_resolution,
            use_image_id=use_image_id, image_index=index,
        )
        for index, (w, h) in enumerate(frame_sizes)
    ]
    return joined(blocks, separator_tokens)


register_rule("minicpmv", minicpmv_tokens, _minicpmv_sequence)
