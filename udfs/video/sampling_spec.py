"""What an extraction takes from a media item: the sampling parameters every ``extract_*``
shares, and the output they give."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Sampling:
    """Frames at ``fps`` within ``[start_s, end_s)``, at most ``max_frames`` (T2Vid's uniform
    pick), long side scaled to ``max_side``, JPEG at ffmpeg ``-q:v quality`` (2 best .. 31).
    ``timeout_s`` bounds one media item's whole extraction."""

    fps: float = 1.0
    start_s: float | None = None
    end_s: float | None = None
    max_frames: int | None = None
    max_side: int | None = None
    quality: int = 3
    timeout_s: float = 120.0

    def __post_init__(self) -> None:
        # sample_timestamps' own checks and texts, made when the value is built, not per item.
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {self.max_frames}")

    def clip(self, start_s: float | None, end_s: float | None) -> Sampling:
        """This sampling within one media item's clip (None: from the start, to the end)."""
        return replace(self, start_s=start_s, end_s=end_s)


@dataclass(frozen=True)
class Output:
    """What a decoder makes of the frames it keeps."""

    size: tuple[int, int]  # (width, height) of the JPEGs
    quality: int  # ffmpeg -q:v (2 best .. 31)
    threads: int  # decoding (and ffmpeg's filtering and encoding) threads; 0: one a core


def output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled so the long side is at most ``max_side``, aspect kept."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
