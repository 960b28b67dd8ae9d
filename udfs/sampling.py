"""Which frames to take from a video: T2Vid's rule (sample at a fixed fps, then subsample
uniformly to a cap). Pure arithmetic, shared by every extraction strategy."""
from __future__ import annotations

import math


def uniform_indices(total: int, n: int) -> list[int]:
    """``n`` indices out of ``range(total)``, T2Vid's ``reformat_json.py`` rule.

    The range is cut into ``n`` segments of ``seg = (total - 1) / n`` and the middle of each is
    kept: ``(round(seg*i) + round(seg*(i+1))) // 2``. Python's ``round`` (half to even) is what
    T2Vid uses, so ties land where they land there. All indices are kept when ``total <= n``.
    """
    if total < 0 or n < 0:
        raise ValueError(f"total and n must be >= 0, got total={total}, n={n}")
    if total <= n:
        return list(range(total))
    seg = (total - 1) / n
    return [(round(seg * i) + round(seg * (i + 1))) // 2 for i in range(n)]


def sample_timestamps(
    duration_s: float,
    fps: float,
    start_s: float | None = None,
    end_s: float | None = None,
    max_frames: int | None = None,
) -> list[float]:
    """Target timestamps (seconds from the start of the media) of the frames to extract.

    One every ``1/fps`` from ``start_s`` (default 0) while strictly before ``end_s`` (default
    and upper bound: ``duration_s``), then at most ``max_frames`` of them by ``uniform_indices``.
    An empty list means the clip holds no frame time (e.g. it starts after the video ends).
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    start = max(0.0, start_s or 0.0)
    end = duration_s if end_s is None else min(end_s, duration_s)
    # k/fps from an integer k, not repeated addition, so long videos accumulate no error; the
    # epsilon keeps an end that falls exactly on the grid (10 s at 1 fps) out of the range.
    count = max(0, math.ceil((end - start) * fps - 1e-9))
    timestamps = [start + k / fps for k in range(count)]
    if max_frames is not None:
        timestamps = [timestamps[i] for i in uniform_indices(len(timestamps), max_frames)]
    return timestamps
