"""How many LLM tokens the images or frames of a sample cost, per model family (no weights needed).

Each rule is registered by name with two functions:
- ``per_frame(width, height, **params) -> int``: the tokens of one image or frame, wrappers included;
- ``sequence(frame_sizes, is_video, **params) -> int``: the tokens of all frames of one sample. It
  differs from a sum of ``per_frame`` where the model does: Qwen2-VL packs video frames in
  temporal pairs, MiniCPM-V numbers its images, and frame blocks may be joined by separators.

A model profile's ``visual`` mapping names the rule and its parameters; a nested ``video`` or
``image`` mapping overrides parameters for that media kind (e.g. MiniCPM-V 2.6 turns image ids
off for video, Qwen2-VL's video processor has its own pixel bounds).
"""
from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

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
        parameters = inspect.signature(self.sequence).parameters.values()
        return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


RULES: dict[str, VisualRule] = {}


def register_rule(name: str, per_frame: Callable[..., int], sequence: Callable[..., int]) -> None:
    RULES[name] = VisualRule(per_frame=per_frame, sequence=sequence)


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")


def _joined(blocks: list[int], separator_tokens: int) -> int:
    return sum(blocks) + separator_tokens * max(len(blocks) - 1, 0)


# --- MiniCPM-V (Llama3-V 2.5, V 2.6) ---------------------------------------------------------
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
    _check_size(width, height)
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
    return _joined(blocks, separator_tokens)


register_rule("minicpmv", minicpmv_tokens, _minicpmv_sequence)


# --- Idefics3 -------------------------------------------------------------------------------
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
    _check_size(width, height)
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
    return _joined(blocks, separator_tokens)


register_rule("idefics3", idefics3_tokens, _idefics3_sequence)


# --- Qwen2-VL -------------------------------------------------------------------------------
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
    _check_size(width, height)
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


# --- profile-level entry points ---------------------------------------------------------------


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
    required = {
        p.name
        for p in inspect.signature(RULES[rule_name].sequence).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    }
    missing = sorted(required - set(visual))
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
def _sequence_tokens(rule: str, params: tuple[tuple[str, Any], ...], sizes: tuple[FrameSize, ...], is_video: bool) -> int:
    return RULES[rule].sequence(list(sizes), is_video, **dict(params))
