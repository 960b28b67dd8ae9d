"""Frame extraction: media in, JPEG frames at T2Vid's sampling plan out. No Spark, no storage.

A video is probed in-process with PyAV, then decoded by the bundled ffmpeg (driven through
ffmpeg-python) with a hard timeout. Frames stream out of ffmpeg's pipe one at a time, so memory
stays bounded whatever the video's length.

Which frame is "the frame at t": the first decoded frame whose timestamp is at or after
``t - early_s``. Exact strategies decode every frame and use half a native frame interval, i.e.
the frame nearest to ``t`` for constant frame rate; they return the same frames. Since speed is
decode-bound, most videos are read with ffmpeg's ``-skip_frame``, which leaves B-frames (or
non-reference frames) undecoded: there ``early_s`` is half the largest gap between the frames
still decoded, measured by the probe from the bitstream, and a level is used only where that
keeps every frame within ``MAX_OFFSET_S`` of its target. A frame found further off (a gap wider
than the probe saw) hands the rest of the plan to the exact strategy. Targets past the last frame
take the last frame. Each frame carries its true presentation timestamp (seconds from the start
of the media), not the target's.

Failures never raise out of ``extract_*``: they return ``status="failed"`` with a readable
``error``. Since ``frames`` is a generator, a failure while decoding (timeout, truncated file)
shows up once it has been consumed: ``status``, ``error`` and ``elapsed_s`` are final then.
"""
from __future__ import annotations

import collections
import functools
import io
import math
import os
import re
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, TypedDict

import av
import ffmpeg
import imageio_ffmpeg
from PIL import Image, ImageOps

from udfs.redact import redact
from udfs.sampling import sample_timestamps

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
# Demuxers whose seek lands on the keyframe before the target, from a full index (mp4 sample
# tables, Matroska cues): there "seek" returns exactly the frames "single_pass" does. Others
# (MPEG-TS, ...) seek by bisecting bytes and can land after the target.
EXACT_SEEK_DEMUXERS = ("mov", "matroska")
# Demuxers of single pictures: a "video" they open is a still (a PNG named .mp4), refused.
STILL_DEMUXERS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe")
# The largest frame or image decoded, in pixels (8192x8192, above 8K UHD). Checked from the
# header before anything is decoded: a few bytes can declare a 16000x16000 frame, which
# decodes into gigabytes and seconds of CPU per frame.
MAX_PIXELS = 8192 * 8192
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")

# Strategy costs, in seconds: an ffmpeg run's fixed start-up (process, open, probe), and the
# H.264 decode time per pixel. Measured on 2 shared cores: ~50 ms a run, 0.7-1.4 ns a pixel;
# only their ratio matters for the choice.
SEEK_RUN_S = 0.05
DECODE_S_PER_PIXEL = 1.2e-9
# A cap on the probe's packet scans, so a file without an index is not read in full.
MAX_PROBE_PACKETS = 5000
# Packets from the start whose frame types the probe reads (~8 s at 25 fps): enough to see the
# encoder's B-frame pattern, little to read over a presigned URL.
FRAME_TYPE_PACKETS = 200
# The furthest a returned frame may lie from its target timestamp, and the part of it a skip
# level may use up (the rest absorbs rounding and frame durations).
MAX_OFFSET_S = 0.1
SKIP_OFFSET_S = 0.09
# ffmpeg ``-skip_frame`` levels, most frames skipped first: "bidir" decodes I- and P-frames only,
# "noref" also the B-frames other frames reference.
SKIP_LEVELS = ("bidir", "noref")
# Slack for float rounding between Python, ffmpeg's expressions and its microsecond seeks.
TIME_EPSILON_S = 1e-6
# Up to this many subsampled targets, ``select`` names each one (~45 bytes each: the filter
# graph stays far below the 128 KiB a command-line argument may hold).
MAX_SELECT_THRESHOLDS = 1000


class VideoError(Exception):
    """A media item cannot be extracted; the message is the readable reason."""


@dataclass(frozen=True)
class Frame:
    frame_index: int  # position in the extracted sequence, from 0
    timestamp_s: float  # presentation time of this frame, seconds from the start of the media
    width: int
    height: int
    jpeg: bytes


class ProbeInfo(TypedDict):
    format: str  # demuxer name, e.g. "mov", "matroska", "gif"
    stream_index: int  # the video stream's index in the container
    duration_s: float  # end of the last video frame
    width: int  # display size: after sample aspect ratio and rotation
    height: int
    codec: str
    fps_native: float | None
    rotation: int  # display rotation applied, degrees counter-clockwise (0, 90, 180, 270)
    n_frames: int  # from the container's count or duration × fps
    gop: float | None  # mean frames per keyframe, from the seek index (seekable formats only)
    seekable: bool  # seeking is exact (EXACT_SEEK_DEMUXERS, with an index)
    skips: dict[str, "SkipScan"]  # per -skip_frame level the bitstream showed (H.264, HEVC)
    start_time_s: float  # container start time; all timestamps are relative to it
    last_frame_s: float  # timestamp of the last video frame


@dataclass(frozen=True)
class SkipScan:
    """What one ``-skip_frame`` level leaves to decode, from the probe's first packets."""

    fraction: float  # of the frames, still decoded
    max_gap_s: float  # largest gap between consecutive decoded frames, in display order


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


class Storage(Protocol):
    """What ``extract_media`` needs of ``framelake.storage.Storage``."""

    def presigned_url(self, uri: str) -> str: ...
    def read_bytes(self, uri: str) -> bytes: ...
    def list(self, pattern: str) -> list[str]: ...


def ffmpeg_exe() -> str:
    """Path of the static ffmpeg shipped by imageio-ffmpeg."""
    return imageio_ffmpeg.get_ffmpeg_exe()


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


# -- inputs ----------------------------------------------------------------------------------
def input_url(src: str) -> str:
    """The URL ffmpeg and PyAV open for ``src`` (a local path or an http(s) URL), after
    checking a local file exists, is a regular file (a FIFO would block forever) and is not
    empty. Local paths get a ``file:`` prefix so names with ``:`` are not read as protocols."""
    scheme = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", src)
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


def _input_options(url: str) -> dict[str, str]:
    """libavformat input options: the protocols allowed, and for http(s) how a flaky store is
    survived: reconnect on resets, 5xx and a mid-body break (resuming with a range request),
    backing off 0, 1, 3, 7 s, and a 30 s read timeout so a stalled connection is redone."""
    if url.startswith("file:"):
        return {"protocol_whitelist": LOCAL_PROTOCOLS}
    return {"protocol_whitelist": REMOTE_PROTOCOLS, "reconnect": "1", "reconnect_on_network_error": "1",
            "reconnect_on_http_error": "5xx", "reconnect_delay_max": "8", "rw_timeout": "30000000"}


def _av_message(err: av.FFmpegError) -> str:
    text = redact(err.strerror or str(err))
    return text[:1].lower() + text[1:]


def check_pixels(width: int, height: int) -> None:
    """Refuses a frame or image over ``MAX_PIXELS``, before it is decoded."""
    if width * height > MAX_PIXELS:
        raise VideoError(f"frame size {width}x{height} exceeds the limit of {MAX_PIXELS} pixels")


# -- probe -----------------------------------------------------------------------------------
def probe(src: str, timeout_s: float = 30.0) -> ProbeInfo:
    """Facts about ``src``'s first video stream. Raises ``VideoError`` with a readable reason
    (missing, empty, not media, no video stream, undecodable, timed out)."""
    return _probe(input_url(src), Deadline(timeout_s))


def _probe(url: str, deadline: Deadline) -> ProbeInfo:
    try:
        container = av.open(
            url,
            options={**_input_options(url), "format_whitelist": DEMUXERS},
            timeout=max(deadline.remaining(), 0.001),
        )
    except av.ArgumentError:  # what libavformat returns for a demuxer not on the list
        raise VideoError("unsupported container format (playlists and other formats are refused)") from None
    except av.FFmpegError as err:
        raise (deadline.error("probe") if deadline.expired() else VideoError(_av_message(err))) from None
    try:
        with container:
            return _probe_container(container, deadline)
    except av.FFmpegError as err:
        raise (deadline.error("probe") if deadline.expired() else VideoError(_av_message(err))) from None


def _probe_container(container: av.container.InputContainer, deadline: Deadline) -> ProbeInfo:
    # Cover art (an mp3's or m4a's picture) is a video stream too, but not a video.
    videos = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not videos:
        raise VideoError("no video stream")
    stream = videos[0]
    demuxer = container.format.name.split(",")[0]
    check_pixels(stream.width, stream.height)
    if demuxer in STILL_DEMUXERS:
        raise VideoError(f"a still image ({demuxer}), not a video")
    start_time_s = (container.start_time or 0) / av.time_base
    fps = float(stream.average_rate or stream.guessed_rate or 0) or None
    rotation, skips = _scan_start(container, stream, deadline)
    last_frame_s, last_duration_s = _last_frame(container, stream, deadline)
    frame_s = last_duration_s or (1 / fps if fps else 0.0)
    if last_frame_s is not None:
        duration_s = last_frame_s - start_time_s + frame_s
    elif stream.duration:
        duration_s = float(stream.duration * stream.time_base)
    elif container.duration:
        duration_s = container.duration / av.time_base
    else:
        raise VideoError("unknown duration")
    n_frames = stream.frames or round(duration_s * (fps or 0))
    # Counted after the tail seek, which loads Matroska's cues.
    keyframes = sum(1 for entry in stream.index_entries if entry.is_keyframe)
    seekable = demuxer in EXACT_SEEK_DEMUXERS and keyframes > 0
    width, height = stream.width, stream.height
    if stream.sample_aspect_ratio and stream.sample_aspect_ratio != 1:
        width = round(width * stream.sample_aspect_ratio)
    if rotation in (90, 270):
        width, height = height, width
    return ProbeInfo(
        format=demuxer,
        stream_index=stream.index,
        duration_s=duration_s,
        width=width,
        height=height,
        codec=stream.codec_context.name,
        fps_native=fps,
        rotation=rotation,
        n_frames=n_frames,
        gop=n_frames / keyframes if seekable else None,
        seekable=seekable,
        skips=skips,
        start_time_s=start_time_s,
        last_frame_s=(last_frame_s - start_time_s) if last_frame_s is not None else duration_s - frame_s,
    )


def _scan_start(container, stream, deadline: Deadline) -> tuple[int, dict[str, SkipScan]]:
    """Decodes the first frame, which proves the stream decodes, and reads its display
    rotation (only what ffmpeg's autorotate applies: multiples of 90). Reads the frame type of
    the first ``FRAME_TYPE_PACKETS`` packets too, without decoding them, for ``_skip_scans``."""
    frame_kind = _frame_kind_reader(stream.codec_context)
    rotation = None
    kinds: list[tuple[float, bool, bool]] = []
    for packets, packet in enumerate(container.demux(stream), 1):
        if rotation is None:
            for frame in packet.decode():
                rotation = round(frame.rotation / 90) % 4 * 90
                break
        if frame_kind is not None and packet.pts is not None and packets <= FRAME_TYPE_PACKETS:
            kind = frame_kind(bytes(packet))
            if kind is not None:
                kinds.append((float(packet.pts * stream.time_base), *kind))
        deadline.check("probe")
        if rotation is not None and (frame_kind is None or packets >= FRAME_TYPE_PACKETS):
            break
        if packets >= MAX_PROBE_PACKETS:
            break
    if rotation is None:
        raise VideoError("no decodable video frame")
    return rotation, _skip_scans(kinds)


def _skip_scans(kinds: list[tuple[float, bool, bool]]) -> dict[str, SkipScan]:
    """Per skip level, what the frames (timestamp, is reference, is B) leave decoded. ffmpeg's
    "noref" drops non-reference frames; "bidir" drops B-frames too."""
    keeps = {"noref": lambda ref, b: ref, "bidir": lambda ref, b: ref and not b}
    if not any(b for _, _, b in kinds):
        keeps.pop("bidir")  # unknown for HEVC, where B-slices are the norm, or nothing to gain
    scans = {}
    for level, keep in keeps.items():
        kept = sorted(pts for pts, ref, b in kinds if keep(ref, b))
        if len(kept) >= 2:
            gap = max(b - a for a, b in zip(kept, kept[1:]))
            scans[level] = SkipScan(fraction=len(kept) / len(kinds), max_gap_s=gap)
    return scans


def _frame_kind_reader(codec: av.codec.context.CodecContext) -> Callable[[bytes], tuple[bool, bool] | None] | None:
    """A function reading (is reference, is B) from a packet of this stream, or None if the
    codec or bitstream format is not one this reads: H.264 and HEVC with length-prefixed NAL
    units (mp4, Matroska), whose configuration record gives the length size."""
    extradata = codec.extradata or b""
    if codec.name == "h264" and len(extradata) > 4 and extradata[0] == 1:
        return functools.partial(_h264_frame_kind, length_size=(extradata[4] & 3) + 1)
    if codec.name == "hevc" and len(extradata) > 21 and extradata[0] == 1:
        return functools.partial(_hevc_frame_kind, length_size=(extradata[21] & 3) + 1)
    return None


def _nal_units(data: bytes, length_size: int) -> Iterator[bytes]:
    pos = 0
    while pos + length_size <= len(data):
        size = int.from_bytes(data[pos: pos + length_size], "big")
        pos += length_size
        yield data[pos: pos + size]
        pos += size


def _h264_frame_kind(data: bytes, length_size: int) -> tuple[bool, bool] | None:
    """From the first slice: ``nal_ref_idc`` in its NAL header, ``slice_type`` (two Exp-Golomb
    numbers into the slice header, after ``first_mb_in_slice``)."""
    for nal in _nal_units(data, length_size):
        if nal and nal[0] & 0x1F in (1, 5):  # a coded slice (non-IDR, IDR)
            bits = "".join(f"{byte:08b}" for byte in nal[1:9])
            _, pos = _exp_golomb(bits, 0)
            slice_type, _ = _exp_golomb(bits, pos)
            if slice_type is None:
                return None
            return bool(nal[0] & 0x60), slice_type % 5 == 1
    return None


def _hevc_frame_kind(data: bytes, length_size: int) -> tuple[bool, bool] | None:
    """From the first slice's NAL type: the even types below 16 are sub-layer non-reference
    pictures (TRAIL_N, TSA_N, RADL_N, ...). Slice types are not read (see ``_skip_scans``)."""
    for nal in _nal_units(data, length_size):
        if nal and (nal[0] >> 1) & 0x3F < 32:
            nal_type = (nal[0] >> 1) & 0x3F
            return not (nal_type <= 14 and nal_type % 2 == 0), False
    return None


def _exp_golomb(bits: str, pos: int) -> tuple[int | None, int]:
    """The unsigned Exp-Golomb number at ``pos`` of a bit string, and the position after it."""
    zeros = 0
    while pos + zeros < len(bits) and bits[pos + zeros] == "0":
        zeros += 1
    end = pos + 2 * zeros + 1
    if end > len(bits):
        return None, end
    return int(bits[pos + zeros: end], 2) - 1, end


def _last_frame(container, stream, deadline: Deadline) -> tuple[float | None, float | None]:
    """(timestamp, duration) of the last video frame, absolute, from the packets after the
    last keyframe; (None, None) when the container cannot seek there cheaply."""
    try:
        container.seek(2**62, stream=stream, backward=True, any_frame=False)
    except av.FFmpegError:
        return None, None
    last = last_duration = None
    for packets, packet in enumerate(container.demux(stream), 1):
        if packet.pts is not None and (last is None or packet.pts >= last):
            last, last_duration = packet.pts, packet.duration
        deadline.check("probe")
        if packets >= MAX_PROBE_PACKETS:
            return None, None
    if last is None:
        return None, None
    return float(last * stream.time_base), float((last_duration or 0) * stream.time_base) or None


# -- ffmpeg runs -----------------------------------------------------------------------------
class FFmpegRun:
    """One ffmpeg process whose stdout the caller reads. Killed when the deadline passes,
    always reaped by ``close``; stderr is drained in a thread (keeping its tail for errors)
    so ffmpeg never blocks on it."""

    def __init__(self, stream_spec, deadline: Deadline):
        self.deadline = deadline
        self.timed_out = False
        self.closed_early = False
        # -copyts: frames keep the source's timestamps, so the pts read back is the true one.
        cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-copyts"]
        self.process: subprocess.Popen = ffmpeg.run_async(stream_spec, cmd=cmd, pipe_stdout=True, pipe_stderr=True)
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=20)
        self._drain = threading.Thread(target=self._drain_stderr, daemon=True)
        self._drain.start()
        self._timer = threading.Timer(max(deadline.remaining(), 0), self._on_deadline)
        self._timer.daemon = True
        self._timer.start()

    @property
    def stdout(self):
        return self.process.stdout

    def _drain_stderr(self) -> None:
        for line in self.process.stderr:
            self.stderr_tail.append(line.decode("utf-8", "replace").rstrip())

    def _on_deadline(self) -> None:
        if self.process.poll() is None:
            self.timed_out = True
            self.process.kill()
            self.process.wait()  # reaped even if the reader has walked away

    def finish(self) -> None:
        """Waits for ffmpeg to exit after its output ended; raises ``VideoError`` if it timed
        out or failed."""
        try:
            self.process.wait(timeout=max(self.deadline.remaining(), 0.001))
        except subprocess.TimeoutExpired:
            self._on_deadline()
        self.close()
        if self.timed_out:
            raise self.deadline.error("ffmpeg")
        if self.process.returncode != 0:
            detail = next((line for line in reversed(self.stderr_tail) if line), "")
            raise VideoError(f"ffmpeg failed (exit {self.process.returncode}): {detail}".rstrip(": "))

    def close(self) -> None:
        """Stops ffmpeg if it still runs (the caller needs no more frames) and reaps it."""
        self._timer.cancel()
        if self.process.poll() is None:
            self.closed_early = True
            self.process.kill()
        self.process.wait()
        self.process.stdout.close()
        self._drain.join(timeout=5)
        self.process.stderr.close()


def jpeg_stream(stream_spec, deadline: Deadline) -> Iterator[tuple[float, bytes]]:
    """(absolute timestamp, JPEG) of each frame ffmpeg writes. ffmpeg muxes the JPEGs into
    NUT on stdout, which carries each frame's timestamp next to its bytes."""
    run = FFmpegRun(stream_spec, deadline)
    frames = 0
    try:
        try:
            with av.open(run.stdout, mode="r", format="nut") as output:
                for packet in output.demux(output.streams.video[0]):
                    if packet.size:
                        frames += 1
                        yield float(packet.pts * packet.time_base), bytes(packet)
        except av.FFmpegError as err:
            run.finish()  # ffmpeg's own error explains it better, if it has one
            if frames:
                raise VideoError(f"reading ffmpeg output: {_av_message(err)}") from None
            return  # ffmpeg succeeded but wrote no frame (a seek past the data): a NUT header only
        run.finish()
    finally:
        run.close()


@dataclass(frozen=True)
class _Output:
    size: tuple[int, int]  # (width, height) of the JPEGs
    quality: int  # ffmpeg -q:v
    threads: int  # ffmpeg's decoding, filtering and encoding threads; 0 lets ffmpeg pick


def _frame_spec(
    url: str, info: ProbeInfo, seek_s: float, skip: str | None, out: _Output, *,
    select: str | None = None, max_frames: int | None = None,
):
    """ffmpeg command: from ``seek_s`` (ffmpeg's exact seek: from the keyframe before it,
    dropping decoded frames before it), the probed video stream decoded at ``-skip_frame
    skip``, optionally a ``select`` filter, scaled to ``out.size``, as MJPEG in NUT. ``-f``
    forces the demuxer the probe saw, so a server cannot switch formats between runs."""
    input_args = {"f": info["format"], **_input_options(url)}
    output_args = {"q:v": out.quality}
    if seek_s > 0:
        input_args["ss"] = f"{seek_s:.6f}"
    if skip is not None:
        input_args["skip_frame"] = skip
    if out.threads:
        input_args["threads"] = output_args["threads"] = out.threads
    video = ffmpeg.input(url, **input_args)[str(info["stream_index"])]
    if select is not None:
        video = video.filter("select", select)
    # ffmpeg rotates upright before these filters (autorotate); the probe's size is upright too.
    video = video.filter("scale", out.size[0], out.size[1]).filter("setsar", 1)
    if max_frames is not None:
        output_args["frames:v"] = max_frames
    spec = video.output(
        "pipe:", format="nut", vcodec="mjpeg", pix_fmt="yuvj420p", fps_mode="passthrough", **output_args
    )
    return spec.global_args("-filter_threads", str(out.threads)) if out.threads else spec


# -- sampling plans --------------------------------------------------------------------------
@dataclass(frozen=True)
class _Plan:
    targets: list[float]  # planned timestamps, relative
    thresholds: list[float]  # per target: take the first decoded frame at or after this, relative
    grid_origin_s: float  # thresholds[k] lies on grid_origin_s + j/fps (before the tail clamp)
    fps: float
    last_frame_s: float
    on_grid: bool  # the targets are every grid point (not subsampled to max_frames)
    skip: str | None  # the -skip_frame level; None decodes every frame (exact)
    first_index: int = 0  # frame_index of targets[0]

    def tail(self, index: int) -> "_Plan":
        """The plan for ``targets[index:]``."""
        return replace(self, targets=self.targets[index:], thresholds=self.thresholds[index:],
                       first_index=self.first_index + index)


def _plan(
    info: ProbeInfo, fps: float, start_s: float | None, end_s: float | None, max_frames: int | None,
    skip: str | None = None,
) -> _Plan:
    targets = sample_timestamps(info["duration_s"], fps, start_s, end_s, max_frames)
    if not targets:
        raise VideoError(
            f"clip {start_s or 0:g}-{info['duration_s'] if end_s is None else end_s:g} s holds no frame time "
            f"(video lasts {info['duration_s']:.3f} s)"
        )
    # Half a frame takes the nearest frame; with frames skipped, half the widest gap left.
    early_s = 0.5 / info["fps_native"] if info["fps_native"] else 0.0
    if skip is not None:
        early_s = max(early_s, info["skips"][skip].max_gap_s / 2)
    # The last frame is clamped a little early so float noise cannot put it after its own time.
    last = info["last_frame_s"] - 1e-4
    return _Plan(
        targets=targets,
        thresholds=[min(t - early_s, last) for t in targets],
        grid_origin_s=max(0.0, start_s or 0.0) - early_s,
        fps=fps,
        last_frame_s=last,
        on_grid=len(targets) == len(sample_timestamps(info["duration_s"], fps, start_s, end_s)),
        skip=skip,
    )


def choose_skip(info: ProbeInfo, fps: float) -> str | None:
    """The ``-skip_frame`` level skipping the most frames whose decoded frames lie close
    together: half the widest gap within ``SKIP_OFFSET_S``, so every target has a frame near
    enough, and no wider than ``1/fps``, so targets do not share frames. None: decode all."""
    for level in SKIP_LEVELS:
        scan = info["skips"].get(level)
        if scan and scan.fraction < 1 and scan.max_gap_s <= min(2 * SKIP_OFFSET_S, 1 / fps):
            return level
    return None


def choose_strategy(info: ProbeInfo, thresholds: Sequence[float], skip: str | None = None) -> str:
    """"seek" (one ffmpeg run per target, each seeking to the keyframe before it) when that
    decodes less than "single_pass" (one run decoding every frame of the sampled span) by the
    cost model below, counting only the frames the ``skip`` level decodes. Only for containers
    where seeking is exact (``ProbeInfo.seekable``)."""
    if not info["seekable"] or not info["fps_native"]:
        return "single_pass"
    decoded = info["skips"][skip].fraction if skip else 1.0
    frame_s = info["width"] * info["height"] * DECODE_S_PER_PIXEL * decoded
    span_frames = (thresholds[-1] - thresholds[0]) * info["fps_native"] + info["gop"] / 2
    single_pass_s = SEEK_RUN_S + span_frames * frame_s
    seek_s = len(set(thresholds)) * (SEEK_RUN_S + (info["gop"] / 2 + 1) * frame_s)
    return "seek" if seek_s < single_pass_s else "single_pass"


def _select(info: ProbeInfo, plan: _Plan) -> str:
    """The ``select`` expression keeping the first frame at or after each threshold.

    Subsampled targets are named one by one: a bisection counts the thresholds passed
    (variable 1) and a frame is kept when the count grows past the last kept one's (variable 0).
    Every grid point, or too many targets to name, use the grid: variable 0 holds the next grid
    threshold (as an offset from the first, so it starts at 0), plus the last frame for targets
    clamped to it; ``_assign`` discards grid frames that T2Vid's subsampling dropped."""
    def number(x: float) -> str:
        return f"({x!r})"

    u = f"(t-{number(info['start_time_s'])})"  # -copyts keeps absolute times; make them relative
    thresholds = sorted(set(plan.thresholds))
    if plan.on_grid or len(thresholds) > MAX_SELECT_THRESHOLDS:
        first, origin, fps = number(plan.thresholds[0]), number(plan.grid_origin_s), number(plan.fps)
        next_threshold = f"{origin}+(floor(({u}-{origin})*{fps})+1)/{fps}"
        return (
            f"if(gte({u},{first}+ld(0)),1+0*st(0,{next_threshold}-{first}),0)"
            f"+gte({u},{number(plan.last_frame_s)})"
        )

    def passed(lo: int, hi: int) -> str:  # thresholds[:lo] are passed, thresholds[hi:] are not
        if lo == hi:
            return str(lo)
        mid = (lo + hi) // 2
        return f"if(lt({u},{number(thresholds[mid] - TIME_EPSILON_S)}),{passed(lo, mid)},{passed(mid + 1, hi)})"

    return f"if(gt(st(1,{passed(0, len(thresholds))}),ld(0)),1+0*st(0,ld(1)),0)"


def _single_pass(url: str, info: ProbeInfo, plan: _Plan, out: _Output, deadline) -> Iterator[tuple[float, bytes]]:
    """One run over the sampled span, ``_select`` keeping the frames of the plan."""
    # Seeking to the start only where seeking is exact; elsewhere decode from the beginning.
    seek_s = plan.thresholds[0] if info["seekable"] else 0.0
    spec = _frame_spec(url, info, seek_s, plan.skip, out, select=_select(info, plan))
    for pts, jpeg in jpeg_stream(spec, deadline):
        yield pts - info["start_time_s"], jpeg


def _seek_each(url: str, info: ProbeInfo, plan: _Plan, out: _Output, deadline) -> Iterator[tuple[float, bytes]]:
    """One run per distinct threshold, each taking the first decoded frame at or after it."""
    last = -math.inf
    for threshold in plan.thresholds:
        if threshold <= last + TIME_EPSILON_S:
            continue  # the frame already yielded serves this target too (a VFR gap)
        spec = _frame_spec(url, info, threshold, plan.skip, out, max_frames=1)
        for pts, jpeg in jpeg_stream(spec, deadline):
            last = pts - info["start_time_s"]
            yield last, jpeg


STRATEGIES: dict[str, Callable[..., Iterator[tuple[float, bytes]]]] = {
    "single_pass": _single_pass,
    "seek": _seek_each,
}


class _OffTarget(Exception):
    """A skip level left target ``index`` without a frame within ``MAX_OFFSET_S``."""

    def __init__(self, index: int):
        self.index = index


def _assign(plan: _Plan, decoded: Iterator[tuple[float, bytes]], size: tuple[int, int]) -> Iterator[Frame]:
    """Frames for the plan's targets, in order: each target takes the first decoded frame at
    or after its threshold (several targets may share one frame across a VFR gap). With a skip
    level, raises ``_OffTarget`` at the first target it leaves too far from a frame."""
    index = 0
    try:
        for timestamp, jpeg in decoded:
            while index < len(plan.targets) and plan.thresholds[index] <= timestamp + TIME_EPSILON_S:
                if plan.skip is not None and abs(timestamp - plan.targets[index]) > MAX_OFFSET_S:
                    raise _OffTarget(index)
                yield Frame(plan.first_index + index, timestamp, size[0], size[1], jpeg)
                index += 1
            if index == len(plan.targets):
                return
    finally:
        decoded.close()  # stops ffmpeg when the plan is complete or the caller gives up
    if index < len(plan.targets):
        if plan.skip is not None:
            raise _OffTarget(index)  # the skipped tail may have held the last frame
        raise VideoError(
            f"video ended before {plan.targets[index]:.3f} s: "
            f"got {plan.first_index + index} of {plan.first_index + len(plan.targets)} planned frames"
        )


def _decode(url: str, info: ProbeInfo, plan: _Plan, exact: _Plan, shape: str, out: _Output, deadline: Deadline,
            result: VideoResult) -> Iterator[Frame]:
    """The plan's frames by ``shape``. When its skip level leaves a target too far from a
    frame, the rest of the targets come from the ``exact`` plan (noted in ``result.strategy``)."""
    try:
        yield from _assign(plan, STRATEGIES[shape](url, info, plan, out, deadline), out.size)
    except _OffTarget as miss:
        rest = exact.tail(miss.index)
        result.strategy = f"{result.strategy}+exact@{miss.index}"
        yield from _assign(rest, STRATEGIES[choose_strategy(info, rest.thresholds)](url, info, rest, out, deadline), out.size)


def output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """(width, height) scaled so the long side is at most ``max_side``, aspect kept."""
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


# -- results ---------------------------------------------------------------------------------
def _failed(error: str, started: float, **fields) -> VideoResult:
    return VideoResult(status="failed", error=redact(error), elapsed_s=time.monotonic() - started, **fields)


def _finishing(result: VideoResult, frames: Iterator[Frame], started: float) -> Iterator[Frame]:
    """``frames``, recording in ``result`` how the iteration ended."""
    try:
        yield from frames
    except VideoError as err:
        result.status, result.error = "failed", redact(str(err))
    except Exception as err:  # a bug or an odd file must fail this media item, not the job
        result.status, result.error = "failed", redact(f"{type(err).__name__}: {err}")
    finally:
        result.elapsed_s = time.monotonic() - started


def _forced(strategy: str, info: ProbeInfo) -> tuple[str, str | None]:
    """(shape, skip level) of a forced strategy such as "seek" or "single_pass:bidir"."""
    shape, _, skip = strategy.partition(":")
    if shape not in STRATEGIES:
        raise VideoError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)}, optionally :<skip level>)")
    if skip and skip not in info["skips"]:
        raise VideoError(f"skip level {skip!r} is not known for this video (known: {', '.join(info['skips']) or 'none'})")
    return shape, skip or None


def extract_frames(
    src: str,
    *,
    fps: float = 1.0,
    start_s: float | None = None,
    end_s: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = None,
    quality: int = 3,
    timeout_s: float = 120.0,
    threads: int = 0,
    strategy: str | None = None,
) -> VideoResult:
    """Frames of a video file or URL (mp4, mkv, webm, gif, ...) at ``fps`` within
    ``[start_s, end_s)``, at most ``max_frames`` (T2Vid's uniform pick), long side scaled to
    ``max_side``, JPEG at ffmpeg ``-q:v quality`` (2 best .. 31). ``timeout_s`` bounds the whole
    extraction; ``threads`` caps ffmpeg's threads (0: ffmpeg's choice, about one per core).
    ``strategy`` forces "single_pass" or "seek", optionally with a skip level
    ("single_pass:bidir"), instead of ``choose_skip`` and ``choose_strategy``."""
    started = time.monotonic()
    deadline = Deadline(timeout_s)
    try:
        url = input_url(src)
        info = _probe(url, deadline)
    except VideoError as err:
        return _failed(str(err), started)
    except Exception as err:  # never raise out of extract_*
        return _failed(f"{type(err).__name__}: {err}", started)
    fields = dict(
        duration_s=info["duration_s"], width=info["width"], height=info["height"], codec=info["codec"],
        fps_native=info["fps_native"], n_frames=info["n_frames"], rotation=info["rotation"],
    )
    try:
        shape, skip = _forced(strategy, info) if strategy else (None, choose_skip(info, fps))
        exact = _plan(info, fps, start_s, end_s, max_frames)
        plan = _plan(info, fps, start_s, end_s, max_frames, skip) if skip else exact
        shape = shape or choose_strategy(info, plan.thresholds, skip)
    except (VideoError, ValueError) as err:
        return _failed(str(err), started, **fields)
    out = _Output(output_size(info["width"], info["height"], max_side), quality, threads)
    result = VideoResult(status="ok", strategy=f"{shape}:{skip}" if skip else shape, **fields)
    result.frames = _finishing(result, _decode(url, info, plan, exact, shape, out, deadline, result), started)
    return result


# -- stills and frame folders ----------------------------------------------------------------
def _is_remote(uri: str) -> bool:
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", uri) is not None


def _read_object(storage: Storage, uri: str) -> bytes:
    """``storage.read_bytes``, after ``input_url``'s checks for a local path: a FIFO would
    block the read forever, a folder or an empty file fail with a clear reason."""
    if not _is_remote(uri):
        input_url(uri)
    return storage.read_bytes(uri)


def _check_inside(folder: str, files: Sequence[str]) -> None:
    """Refuses a local frame folder holding a symlink that resolves outside the folder."""
    root = os.path.realpath(folder)
    for path in files:
        if os.path.commonpath([root, os.path.realpath(path)]) != root:
            raise VideoError(f"{os.path.basename(path)}: symlink leads outside the frame folder")


def pil_quality(qscale: int) -> int:
    """The libjpeg (PIL) quality closest to ffmpeg's ``-q:v``, so stills and video frames get
    alike JPEGs. Model: ``qscale/8`` scales libjpeg's quality-50 tables, as ``(200-2q)%`` does
    above quality 50 and ``5000/q %`` below. Checked by file size on a real 448 px frame:
    q:v 2, 3, 5, 8 match qualities ~91, 83, 66, 40; this gives 88, 81, 69, 50."""
    scale_percent = 12.5 * qscale
    quality = 100 - scale_percent / 2 if scale_percent <= 100 else 5000 / scale_percent
    return max(1, min(95, round(quality)))


def _encode_image(data: bytes, max_side: int | None, quality: int) -> tuple[int, int, bytes]:
    """(width, height, JPEG) of an image file's bytes, upright (EXIF orientation), RGB."""
    with Image.open(io.BytesIO(data)) as image:
        check_pixels(image.width, image.height)
        if max_side and image.format == "JPEG":
            image.draft("RGB", (max_side, max_side))  # decode big JPEGs at reduced size
        image = ImageOps.exif_transpose(image)
        if image.mode != "RGB":
            # Transparent pixels composite onto white, as a viewer shows them.
            rgba = image.convert("RGBA")
            image = Image.new("RGB", rgba.size, "white")
            image.paste(rgba, mask=rgba.getchannel("A"))
        size = output_size(image.width, image.height, max_side)
        if size != image.size:
            image = image.resize(size, Image.Resampling.BICUBIC)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=pil_quality(quality))
    return size[0], size[1], out.getvalue()


def _read_local(path: str) -> bytes:
    url = input_url(path)
    if not url.startswith("file:"):
        raise VideoError("only local paths are read without a read_bytes function")
    with open(url.removeprefix("file:"), "rb") as file:
        return file.read()


def _image_message(err: Exception) -> str:
    if isinstance(err, VideoError):
        return str(err)
    if isinstance(err, Image.UnidentifiedImageError):
        return "not an image file"
    if isinstance(err, Image.DecompressionBombError):  # far over PIL's own limit: refused at open
        return f"image size exceeds the limit of {MAX_PIXELS} pixels"
    if isinstance(err, OSError) and err.strerror:
        return f"cannot read image: {err.strerror}"
    return redact(f"cannot read image: {type(err).__name__}: {err}")


def extract_image(
    src: str | bytes,
    *,
    max_side: int | None = None,
    quality: int = 3,
    read_bytes: Callable[[str], bytes] = _read_local,
) -> VideoResult:
    """One still (a path read with ``read_bytes``, or the file's bytes) as a one-frame result
    at timestamp 0. ``quality`` is on ffmpeg's ``-q:v`` scale, like the videos'."""
    started = time.monotonic()
    try:
        width, height, jpeg = _encode_image(read_bytes(src) if isinstance(src, str) else src, max_side, quality)
    except Exception as err:  # never raise out of extract_*
        return _failed(_image_message(err), started)
    return VideoResult(
        status="ok", strategy="image", width=width, height=height, n_frames=1, duration_s=0.0,
        elapsed_s=time.monotonic() - started, frames=iter([Frame(0, 0.0, width, height, jpeg)]),
    )


def _natural_key(name: str) -> list:
    """Sort key putting frame_2 before frame_10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def list_frames_dir(dir_path: str) -> list[str]:
    """The image files of a local folder in natural order."""
    try:
        names = os.listdir(dir_path)
    except FileNotFoundError:
        raise VideoError("folder not found") from None
    except NotADirectoryError:
        raise VideoError("not a folder") from None
    files = [os.path.join(dir_path, n) for n in names if n.lower().endswith(IMAGE_SUFFIXES)]
    return sorted(files, key=_natural_key)


def extract_frames_dir(
    src: str | Sequence[str],
    *,
    source_fps: float = 1.0,
    fps: float = 1.0,
    start_s: float | None = None,
    end_s: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = None,
    quality: int = 3,
    timeout_s: float = 120.0,
    read_bytes: Callable[[str], bytes] = _read_local,
) -> VideoResult:
    """A folder of ordered images (T2Vid's rendered text, MIMIC-IT frame sets) played as a
    video at ``source_fps``: image ``i`` is at ``i / source_fps``. ``src`` is a local folder or
    the image paths/URIs already in order (each read with ``read_bytes``). The sampling plan is
    the videos' one; each target takes the nearest image."""
    started = time.monotonic()
    deadline = Deadline(timeout_s)
    try:
        files = list_frames_dir(src) if isinstance(src, str) else list(src)
        if not files:
            raise VideoError("no image files in folder")
        duration_s = len(files) / source_fps
        targets = sample_timestamps(duration_s, fps, start_s, end_s, max_frames)
        if not targets:
            raise VideoError(f"clip holds no frame time (the folder plays for {duration_s:g} s)")
    except (VideoError, ValueError) as err:
        return _failed(str(err), started)
    result = VideoResult(
        status="ok", strategy="frames_dir", duration_s=duration_s, fps_native=source_fps, n_frames=len(files),
    )

    def frames() -> Iterator[Frame]:
        for index, target in enumerate(targets):
            deadline.check("reading frames")
            position = min(len(files) - 1, math.floor(target * source_fps + 0.5))
            try:
                width, height, jpeg = _encode_image(read_bytes(files[position]), max_side, quality)
            except Exception as err:
                raise VideoError(f"{os.path.basename(files[position])}: {_image_message(err)}") from None
            result.width, result.height = width, height
            yield Frame(index, position / source_fps, width, height, jpeg)

    result.frames = _finishing(result, frames(), started)
    return result


def extract_media(
    kind: str,
    uri: str,
    storage: Storage,
    *,
    fps: float = 1.0,
    start_s: float | None = None,
    end_s: float | None = None,
    max_frames: int | None = None,
    max_side: int | None = None,
    quality: int = 3,
    timeout_s: float = 120.0,
    threads: int = 0,
) -> VideoResult:
    """Dispatch on the media ``kind`` ("video", "image", "frames_dir") of a local or ``s3://``
    URI. Videos on S3 are read by ffmpeg through a presigned URL, without a local copy.
    ``threads`` caps ffmpeg's threads for videos (see ``extract_frames``)."""
    read_bytes = functools.partial(_read_object, storage)
    if kind == "image":
        return extract_image(uri, max_side=max_side, quality=quality, read_bytes=read_bytes)
    sampling = dict(fps=fps, start_s=start_s, end_s=end_s, max_frames=max_frames, max_side=max_side,
                    quality=quality, timeout_s=timeout_s)
    try:  # extract_* never raise: what is caught here is the store's listing or presigning
        if kind == "frames_dir":
            files = sorted((f for f in storage.list(uri) if f.lower().endswith(IMAGE_SUFFIXES)), key=_natural_key)
            if not _is_remote(uri):
                _check_inside(uri, files)
            return extract_frames_dir(files, read_bytes=read_bytes, **sampling)
        if kind == "video":
            url = storage.presigned_url(uri) if uri.startswith("s3://") else uri
            return extract_frames(url, threads=threads, **sampling)
    except VideoError as err:
        return VideoResult(status="failed", error=redact(str(err)))
    except Exception as err:
        return VideoResult(status="failed", error=redact(f"storage: {type(err).__name__}: {err}"))
    return VideoResult(status="failed", error=f"unknown media kind {kind!r}")
