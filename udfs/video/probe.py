"""Facts about a video, read in-process with PyAV before anything decodes it: size after
rotation and aspect ratio, true duration, frame rate, whether seeking is exact, and the
B-frame pattern of the first packets (see ``bitstream``)."""
from __future__ import annotations

import contextlib
from typing import TypedDict

import av

from udfs.video.bitstream import SkipScan, frame_kind_reader, skip_scans
from udfs.video.inputs import DEMUXERS, Deadline, VideoError, av_message, check_pixels, input_options, input_url

# Demuxers whose seek lands on the keyframe before the target, from a full index (mp4 sample
# tables, Matroska cues): there "seek" returns exactly the frames "single_pass" does. Others
# (MPEG-TS, ...) seek by bisecting bytes and can land after the target.
EXACT_SEEK_DEMUXERS = ("mov", "matroska")
# Demuxers of single pictures: a "video" they open is a still (a PNG named .mp4), refused.
STILL_DEMUXERS = ("image2", "png_pipe", "jpeg_pipe", "webp_pipe")
# A cap on the probe's packet scans, so a file without an index is not read in full.
MAX_PROBE_PACKETS = 5000
# Packets from the start whose frame types the probe reads (~8 s at 25 fps): enough to see the
# encoder's B-frame pattern, little to read over a presigned URL.
FRAME_TYPE_PACKETS = 200


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
    skips: dict[str, SkipScan]  # per -skip_frame level the bitstream showed (H.264, HEVC)
    start_time_s: float  # container start time; all timestamps are relative to it
    last_frame_s: float  # timestamp of the last video frame


def probe(src: str, timeout_s: float = 30.0) -> ProbeInfo:
    """Facts about ``src``'s first video stream. Raises ``VideoError`` with a readable reason
    (missing, empty, not media, no video stream, undecodable, timed out)."""
    with OpenInput(input_url(src), Deadline(timeout_s)) as source:
        return source.probe()


class OpenInput:
    """A source opened once with PyAV: the probe reads it, and the in-process decoder
    (``pyav_decoder``) goes on from the same open file, so a short clip is opened once.
    ``threads`` sets the video decoder's threads before anything is decoded (0: one a core).
    PyAV errors become ``VideoError``; the deadline bounds the open and every read."""

    def __init__(self, url: str, deadline: Deadline, threads: int = 0):
        self.url = url
        self.deadline = deadline
        self.threads = threads
        self._container: av.container.InputContainer | None = None

    def __enter__(self) -> OpenInput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def container(self) -> av.container.InputContainer:
        """The open container (opened now if it is not)."""
        if self._container is None:
            self._container = self._open()
        return self._container

    def reopen(self) -> av.container.InputContainer:
        """A fresh open, read from the start: demuxers without an index seek by bytes and may
        land past the start."""
        self.close()
        return self.container()

    def probe(self) -> ProbeInfo:
        with av_errors(self.deadline, "probe"):
            return _probe_container(self.container(), self.deadline)

    def _open(self) -> av.container.InputContainer:
        with av_errors(self.deadline, "probe"):
            try:
                container = av.open(
                    self.url,
                    options={**input_options(self.url), "format_whitelist": DEMUXERS},
                    timeout=max(self.deadline.remaining(), 0.001),
                )
            except av.ArgumentError:  # what libavformat returns for a demuxer not on the list
                raise VideoError("unsupported container format (playlists and other formats are refused)") from None
        for stream in container.streams.video:
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.threads
        return container


@contextlib.contextmanager
def av_errors(deadline: Deadline, what: str):
    """PyAV's errors inside the block as ``VideoError``: the timeout if the deadline passed,
    else libav's own message."""
    try:
        yield
    except av.FFmpegError as err:
        raise (deadline.error(what) if deadline.expired() else VideoError(av_message(err))) from None


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
    the first ``FRAME_TYPE_PACKETS`` packets too, without decoding them, for ``skip_scans``."""
    frame_kind = frame_kind_reader(stream.codec_context)
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
    return rotation, skip_scans(kinds)


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
