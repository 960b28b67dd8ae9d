"""What a source may be before anything decodes it: the URL checks, the libavformat input
options (protocol and demuxer whitelists), the pixel limit, the shared time budget and the
error every extraction step raises."""
from __future__ import annotations

import os
import re
import stat
import time

import av

from udfs.redact import redact

# The protocols a source may use: local files read only local files, URLs (presigned S3) only
# the network, so a remote file can never make ffmpeg read a local one. Nothing else: no pipes,
# devices, or "concat:"/"subfile:" protocols that stitch other files in.
LOCAL_PROTOCOLS = "file"
REMOTE_PROTOCOLS = "http,https,tcp,tls"
# Demuxers user media may be read with. Playlist-like demuxers (hls, dash, concat, imf) open
# further URLs named inside the file, so a crafted .m3u8 could read /etc/passwd: not listed.
DEMUXERS = ",".join([
    "mov", "matroska", "avi", "gif", "mpegts", "mpeg", "mpegvideo", "flv", "asf", "ogg", "nut",
    "mxf", "dv", "rm", "ivf", "obu", "h264", "hevc", "m4v", "yuv4mpegpipe", "apng", "image2",
    "png_pipe", "jpeg_pipe", "webp_pipe", "mjpeg",
    # audio-only containers, so such files fail with "no video stream", not "unsupported"
    "mp3", "wav", "aac", "flac",
])
# The largest frame or image decoded, in pixels (8192x8192, above 8K UHD). Checked from the
# header before anything is decoded: a few bytes can declare a 16000x16000 frame, which
# decodes into gigabytes and seconds of CPU per frame.
MAX_PIXELS = 8192 * 8192
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


class VideoError(Exception):
    """A media item cannot be extracted; the message is the readable reason."""


class Deadline:
    """A time budget shared by every step of one extraction."""

    def __init__(self, timeout_s: float):
        self.timeout_s = timeout_s
        self.at = time.monotonic() + timeout_s

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def error(self, what: str) -> VideoError:
        return VideoError(f"{what} timed out after {self.timeout_s:g} s")

    def check(self, what: str) -> None:
        if self.expired():
            raise self.error(what)


def is_remote(uri: str) -> bool:
    return _SCHEME.match(uri) is not None


def input_url(src: str) -> str:
    """The URL ffmpeg and PyAV open for ``src`` (a local path or an http(s) URL), after
    checking a local file exists, is a regular file (a FIFO would block forever) and is not
    empty. Local paths get a ``file:`` prefix so names with ``:`` are not read as protocols."""
    scheme = _SCHEME.match(src)
    if scheme:
        if scheme.group(1).lower() not in ("http", "https"):
            raise VideoError(f"unsupported URL scheme {scheme.group(1)!r} (only local paths and http(s))")
        return src
    try:
        info = os.stat(src)
    except FileNotFoundError:
        raise VideoError("file not found") from None
    except OSError as err:
        raise VideoError(f"cannot read file: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise VideoError("not a regular file")
    if info.st_size == 0:
        raise VideoError("file is empty")
    return "file:" + os.path.abspath(src)


def input_options(url: str) -> dict[str, str]:
    """libavformat input options: the protocols allowed, and for http(s) how a flaky store is
    survived: reconnect on resets, 5xx and a mid-body break (resuming with a range request),
    backing off 0, 1, 3, 7 s, and a 30 s read timeout so a stalled connection is redone."""
    if url.startswith("file:"):
        return {"protocol_whitelist": LOCAL_PROTOCOLS}
    return {"protocol_whitelist": REMOTE_PROTOCOLS, "reconnect": "1", "reconnect_on_network_error": "1",
            "reconnect_on_http_error": "5xx", "reconnect_delay_max": "8", "rw_timeout": "30000000"}


def av_message(err: av.FFmpegError) -> str:
    """A PyAV error as readable text, credentials cut out."""
    text = redact(err.strerror or str(err))
    return text[:1].lower() + text[1:]


def check_pixels(width: int, height: int) -> None:
    """Refuses a frame or image over ``MAX_PIXELS``, before it is decoded."""
    if width * height > MAX_PIXELS:
        raise VideoError(f"frame size {width}x{height} exceeds the limit of {MAX_PIXELS} pixels")
