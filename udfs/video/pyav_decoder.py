"""The plan's shapes decoded in-process with PyAV: "single_pass" (one pass over the sampled
span) and "seek" (a seek per target), from the file the probe opened. No process is started
and the file is not opened twice, which is most of a short clip's cost; frames are scaled by
libswscale and encoded by Pillow's libjpeg-turbo. They are the frames the ffmpeg shapes
return: the same skip levels (``AVCodecContext.skip_frame``), the same exact seek (to the
keyframe before the target, then decoding up to it), true timestamps, rotation applied.

The deadline is checked after every packet; a packet's decode is bounded by the pixel limit
the probe checked, and network reads by the open's timeout."""
from __future__ import annotations

import io
import math
from collections.abc import Iterator

import av
from PIL import Image

from udfs.video.inputs import Deadline, VideoError
from udfs.video.plan import TIME_EPSILON_S, Plan
from udfs.video.probe import OpenInput, ProbeInfo, av_errors
from udfs.video.sampling_spec import Output
from udfs.video.stills import pil_quality

# AVCodecContext.skip_frame per skip level of the plan.
SKIP_FRAME = {None: "DEFAULT", "bidir": "BIDIR", "noref": "NONREF"}
# The PIL transpose that turns a decoded frame upright, per display rotation (degrees
# counter-clockwise), as ffmpeg's autorotate does.
UPRIGHT = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}


class _Encoder:
    """Decoded frames to upright JPEGs of ``out.size``: libswscale scales straight to RGB at
    the size before rotation (bilinear: at these downscales its filter spans the source pixels,
    as ffmpeg's bicubic does, for a quarter less time), Pillow turns and encodes."""

    def __init__(self, out: Output, rotation: int):
        self.upright = UPRIGHT.get(rotation)
        self.size = out.size[::-1] if rotation in (90, 270) else out.size
        self.quality = pil_quality(out.quality)

    def __call__(self, frame: av.VideoFrame) -> bytes:
        image = frame.to_image(width=self.size[0], height=self.size[1], interpolation="BILINEAR")
        if self.upright is not None:
            image = image.transpose(self.upright)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=self.quality)
        return buffer.getvalue()


def _frames(container: av.container.InputContainer, info: ProbeInfo, skip: str | None,
            deadline: Deadline) -> Iterator[tuple[float, av.VideoFrame]]:
    """(timestamp from the start of the media, frame) of every frame decoded from where the
    container stands, at the ``skip`` level."""
    stream = container.streams[info["stream_index"]]
    stream.codec_context.skip_frame = SKIP_FRAME[skip]
    # Integer arithmetic, one correctly rounded division: the float of the exact Fraction, as
    # ffmpeg_runner computes it, without a Fraction per frame (a few percent of a small clip).
    numerator, denominator = stream.time_base.numerator, stream.time_base.denominator
    start_s = info["start_time_s"]
    for packet in _packets(container, stream):
        try:
            frames = stream.codec_context.decode(packet)
        except av.InvalidDataError:
            continue  # a damaged packet is dropped and decoding goes on, as ffmpeg does
        for frame in frames:
            pts = frame.pts if frame.pts is not None else frame.dts
            if pts is None:
                raise VideoError("decoded frame without a timestamp")
            yield pts * numerator / denominator - start_s, frame
        deadline.check("decoding")


def _packets(container: av.container.InputContainer, stream) -> Iterator[av.Packet | None]:
    """The stream's packets, then None, which flushes the frames the decoder holds. A file cut
    short or damaged ends at the packet that cannot be read, as it does for ffmpeg; the plan's
    assignment then says which frames are missing."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.InvalidDataError:
            yield None
            return
        yield packet


def _seek(container: av.container.InputContainer, info: ProbeInfo, seconds: float) -> None:
    """To the keyframe at or before ``seconds`` from the start (the decoder is flushed)."""
    stream = container.streams[info["stream_index"]]
    target = math.floor((seconds + info["start_time_s"]) / stream.time_base)
    container.seek(target, stream=stream, backward=True, any_frame=False)


def single_pass(source: OpenInput, info: ProbeInfo, plan: Plan, out: Output,
                deadline: Deadline) -> Iterator[tuple[float, bytes]]:
    """One pass from the keyframe before the first threshold (from the start where seeking
    is not exact), encoding the first frame at or after each threshold."""
    encode = _Encoder(out, info["rotation"])
    with av_errors(deadline, "decoding"):
        if info["seekable"]:
            container = source.container()
            _seek(container, info, plan.thresholds[0])
        else:
            container = source.reopen()
        index = 0
        for timestamp, frame in _frames(container, info, plan.skip, deadline):
            if plan.thresholds[index] <= timestamp + TIME_EPSILON_S:
                yield timestamp, encode(frame)
                while index < len(plan.thresholds) and plan.thresholds[index] <= timestamp + TIME_EPSILON_S:
                    index += 1
                if index == len(plan.thresholds):
                    return


def seek_each(source: OpenInput, info: ProbeInfo, plan: Plan, out: Output,
              deadline: Deadline) -> Iterator[tuple[float, bytes]]:
    """A seek per distinct threshold, each taking the first frame decoded at or after it."""
    encode = _Encoder(out, info["rotation"])
    container = source.container()
    last = -math.inf
    with av_errors(deadline, "decoding"):
        for threshold in plan.thresholds:
            if threshold <= last + TIME_EPSILON_S:
                continue  # the frame already yielded serves this target too (a VFR gap)
            _seek(container, info, threshold)
            for timestamp, frame in _frames(container, info, plan.skip, deadline):
                if timestamp >= threshold - TIME_EPSILON_S:
                    last = timestamp
                    yield timestamp, encode(frame)
                    break
            else:
                return  # past the last frame: the assignment reports what is missing
