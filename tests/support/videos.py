"""Deterministic test media made with the bundled ffmpeg (imageio-ffmpeg): videos, GIFs,
audio-only files and broken files. The demo corpus is built with these too, so this module
needs no test tooling.

``make_numbered_video`` burns each frame's number into the picture as 16 black/white vertical
bars (bit ``i`` = bar ``i``, least significant on the left); ``read_frame_number`` reads it back
from a JPEG, which proves which source frame an extracted frame is.
"""
from __future__ import annotations

import io
import os
import random
import subprocess
import tempfile
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image

FRAME_NUMBER_BITS = 16
# Fast settings, one thread each so output is byte-identical from run to run.
CODEC_ARGS = {
    "libx264": ["-preset", "veryfast", "-crf", "18", "-threads", "1"],
    "libvpx-vp9": ["-deadline", "realtime", "-cpu-used", "8", "-b:v", "1M", "-threads", "1"],
    "libx265": ["-preset", "ultrafast", "-x265-params", "log-level=error:pools=1:frame-threads=1"],
    "gif": [],
}


def _ffmpeg(*args: str) -> None:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        timeout=120,
    )


def vfr_pts_s(n: int, fps: float, vfr_from_s: float = 1.0) -> float:
    """Timestamp of frame ``n`` in a ``vfr=True`` video: ``fps`` up to ``vfr_from_s``, then a
    third of it (frames three times as long), so frame spacing changes mid-stream."""
    first = round(fps * vfr_from_s)
    return n / fps if n < first else first / fps + 3 * (n - first) / fps


def _encode(
    path: str | os.PathLike,
    source: str,
    *,
    fps: float,
    codec: str,
    gop: int | None,
    bframes: int | None,
    rotate: int | None,
    vfr: bool,
    pix_fmt: str | None,
    audio: bool,
    vfr_from_s: float = 1.0,
) -> Path:
    """Encode a lavfi ``source`` graph; ``rotate`` is added afterwards as display metadata."""
    path = Path(path)
    filters = [source]
    if vfr:
        first = round(fps * vfr_from_s)
        filters.append(f"setpts='round(if(lt(N,{first}),N/{fps},{first}/{fps}+3*(N-{first})/{fps})/TB)'")
    args = ["-f", "lavfi", "-i", ",".join(filters)]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000", "-shortest", "-c:a", "aac"]
    args += ["-c:v", codec, *CODEC_ARGS.get(codec, [])]
    if codec == "libx264":
        # B-frames by default, so seeking meets frames stored out of display order.
        args += ["-bf", str(3 if bframes is None else bframes)]
    if gop is not None:
        args += ["-g", str(gop), "-keyint_min", str(gop)]
    if codec != "gif":  # GIF encodes a palette; ffmpeg picks it
        args += ["-pix_fmt", pix_fmt or "yuv420p"]
    if vfr:
        args += ["-fps_mode", "passthrough"]
    # bitexact: no random Matroska segment id, no version tag. faststart: moov first, as web
    # videos have it, so a truncated copy still opens and then runs out of data.
    mux = ["-fflags", "+bitexact"]
    if path.suffix in (".mp4", ".mov", ".m4v"):
        mux += ["-movflags", "+faststart"]
    if rotate is None:
        _ffmpeg(*args, *mux, str(path))
        return path
    # ffmpeg takes display rotation as an input option only, hence a second (stream copy) pass.
    with tempfile.TemporaryDirectory() as tmp:
        plain = os.path.join(tmp, "plain" + path.suffix)
        _ffmpeg(*args, *mux, plain)
        _ffmpeg("-display_rotation", str(rotate), "-i", plain, "-c", "copy", *mux, str(path))
    return path


def make_test_video(
    path: str | os.PathLike,
    *,
    seconds: float = 2.0,
    fps: float = 25.0,
    size: tuple[int, int] = (320, 240),
    codec: str = "libx264",
    gop: int | None = None,
    bframes: int | None = None,
    rotate: int | None = None,
    vfr: bool = False,
    pix_fmt: str | None = None,
    audio: bool = False,
) -> Path:
    """A moving colour test pattern (``testsrc2``); the container follows ``path``'s suffix.

    ``rotate`` sets display rotation metadata (degrees counter-clockwise, as phones write it);
    ``vfr`` keeps the ``seconds × fps`` frames but spaces those after the first second three
    times wider (see ``vfr_pts_s``), so the video lasts longer; ``codec="gif"`` with a ``.gif``
    path makes an animated GIF.
    """
    width, height = size
    # testsrc2 rounds odd sizes down to even ones; scaling gets the exact size back.
    source = (f"testsrc2=size={width + width % 2}x{height + height % 2}:rate={fps}:duration={seconds},"
              f"scale={width}:{height}")
    return _encode(path, source, fps=fps, codec=codec, gop=gop, bframes=bframes, rotate=rotate,
                   vfr=vfr, pix_fmt=pix_fmt, audio=audio)


def make_numbered_video(
    path: str | os.PathLike,
    *,
    seconds: float = 4.0,
    fps: float = 25.0,
    size: tuple[int, int] = (320, 64),
    codec: str = "libx264",
    gop: int | None = None,
    bframes: int | None = None,
    rotate: int | None = None,
    vfr: bool = False,
    vfr_from_s: float = 1.0,
) -> Path:
    """A video whose frame ``n`` shows ``n`` in binary (see ``read_frame_number``); with
    ``rotate``, the bars read left to right only once the frame is turned upright; ``vfr``
    as in ``make_test_video``, from ``vfr_from_s`` on (see ``vfr_pts_s``)."""
    width, height = size
    bar = f"(W/{FRAME_NUMBER_BITS})"
    bit = f"mod(floor(N/pow(2,floor(X/{bar}))),2)"
    source = (
        f"color=black:size={width}x{height}:rate={fps}:duration={seconds},"
        f"format=gray,geq=lum='255*{bit}',format=yuv420p"
    )
    return _encode(path, source, fps=fps, codec=codec, gop=gop, bframes=bframes, rotate=rotate,
                   vfr=vfr, pix_fmt=None, audio=False, vfr_from_s=vfr_from_s)


def read_frame_number(jpeg: bytes) -> int:
    """The frame number burned in by ``make_numbered_video``, read from bar centres."""
    gray = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=np.float32)
    height, width = gray.shape
    bar = width / FRAME_NUMBER_BITS
    row = gray[height // 4: height - height // 4].mean(axis=0)
    bits = [row[int((i + 0.5) * bar)] > 128 for i in range(FRAME_NUMBER_BITS)]
    return sum(1 << i for i, on in enumerate(bits) if on)


def make_audio_only(path: str | os.PathLike, *, seconds: float = 1.0, cover: bool = False) -> Path:
    """An AAC file with no video stream; ``cover`` adds cover art, which containers store as
    a one-picture video stream marked ``attached_pic`` (use ``.mp4`` then: ``.m4a`` drops the
    audio)."""
    args = ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}"]
    if cover:
        args += ["-f", "lavfi", "-i", "testsrc2=size=64x64:duration=0.04", "-map", "0", "-map", "1",
                 "-c:v", "mjpeg", "-disposition:v", "attached_pic"]
    _ffmpeg(*args, "-c:a", "aac", str(path))
    return Path(path)


def make_corrupt_video(path: str | os.PathLike, *, size: int = 64 * 1024, seed: int = 7) -> Path:
    """An ``.mp4``-looking file: a valid ``ftyp`` box followed by seeded random bytes."""
    rng = random.Random(seed)
    ftyp = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    Path(path).write_bytes(ftyp + rng.randbytes(size - len(ftyp)))
    return Path(path)


def make_truncated_video(src: str | os.PathLike, path: str | os.PathLike, *, keep: float = 0.5) -> Path:
    """The first ``keep`` fraction of ``src``'s bytes (a download cut short)."""
    data = Path(src).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)
