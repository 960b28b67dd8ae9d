"""What every ``extract_*`` returns.

Failures never raise out of ``extract_*``: they return ``status="failed"`` with a readable
``error``. Since ``frames`` is a generator, a failure while decoding (timeout, truncated file)
shows up once it has been consumed: ``status``, ``error`` and ``elapsed_s`` are final then.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from udfs.redact import redact
from udfs.video.inputs import VideoError


@dataclass(frozen=True)
class Frame:
    frame_index: int  # position in the extracted sequence, from 0
    timestamp_s: float  # presentation time of this frame, seconds from the start of the media
    width: int
    height: int
    jpeg: bytes


@dataclass
class VideoResult:
    status: str  # "ok" or "failed"
    error: str | None = None
    strategy: str | None = None  # "single_pass", "seek", "image", "frames_dir"
    duration_s: float | None = None
    width: int | None = None
    height: int | None = None
    codec: str | None = None
    fps_native: float | None = None
    n_frames: int | None = None  # native frame count (probe estimate), not frames extracted
    rotation: int | None = None
    elapsed_s: float = 0.0
    frames: Iterator[Frame] = field(default_factory=lambda: iter(()))


def failed(error: str, started: float, **fields) -> VideoResult:
    """A failed result, ``error`` redacted, timed from ``started`` (``time.monotonic``)."""
    return VideoResult(status="failed", error=redact(error), elapsed_s=time.monotonic() - started, **fields)


def finishing(result: VideoResult, frames: Iterator[Frame], started: float) -> Iterator[Frame]:
    """``frames``, recording in ``result`` how the iteration ended."""
    try:
        yield from frames
    except VideoError as err:
        result.status, result.error = "failed", redact(str(err))
    except Exception as err:  # a bug or an odd file must fail this media item, not the job
        result.status, result.error = "failed", redact(f"{type(err).__name__}: {err}")
    finally:
        result.elapsed_s = time.monotonic() - started
