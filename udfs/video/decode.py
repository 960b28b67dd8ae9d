"""``extract_frames``: a video's plan decoded by the chosen strategy (decoder, shape and skip
level), each target given its decoded frame, with the exact fallback where a skip level left a
target too far off."""
from __future__ import annotations

import time
from collections.abc import Iterator

from udfs.video import ffmpeg_decoder, pyav_decoder
from udfs.video.inputs import Deadline, VideoError, input_url
from udfs.video.plan import (
    MAX_OFFSET_S,
    TIME_EPSILON_S,
    Plan,
    choose_decoder,
    choose_skip,
    choose_strategy,
    make_plan,
)
from udfs.video.probe import OpenInput, ProbeInfo
from udfs.video.results import Frame, VideoResult, failed, finishing
from udfs.video.sampling_spec import Output, Sampling, output_size

# decoder -> shape -> (source, info, plan, out, deadline) -> (timestamp, JPEG) of the frames kept
DECODERS = {
    "pyav": {"single_pass": pyav_decoder.single_pass, "seek": pyav_decoder.seek_each},
    "ffmpeg": {"single_pass": ffmpeg_decoder.single_pass, "seek": ffmpeg_decoder.seek_each},
}


class _OffTarget(Exception):
    """A skip level left target ``index`` without a frame within ``MAX_OFFSET_S``."""

    def __init__(self, index: int):
        self.index = index


def _assign(plan: Plan, decoded: Iterator[tuple[float, bytes]], size: tuple[int, int]) -> Iterator[Frame]:
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


def _decode(source: OpenInput, info: ProbeInfo, plan: Plan, exact: Plan, decoder: str, shape: str, out: Output,
            deadline: Deadline, result: VideoResult) -> Iterator[Frame]:
    """The plan's frames by ``decoder`` and ``shape``. When its skip level leaves a target too
    far from a frame, the rest of the targets come from the ``exact`` plan (noted in
    ``result.strategy``). The source is closed at the end."""
    shapes = DECODERS[decoder]
    try:
        if decoder != "pyav":
            source.close()  # the decoder opens the file itself
        try:
            yield from _assign(plan, shapes[shape](source, info, plan, out, deadline), out.size)
        except _OffTarget as miss:
            rest = exact.tail(miss.index)
            result.strategy = f"{result.strategy}+exact@{miss.index}"
            decode_rest = shapes[choose_strategy(info, rest.thresholds, decoder=decoder)]
            yield from _assign(rest, decode_rest(source, info, rest, out, deadline), out.size)
    finally:
        source.close()


def _forced(strategy: str, info: ProbeInfo) -> tuple[str, str, str | None]:
    """(decoder, shape, skip level) of a forced strategy such as "ffmpeg:seek" or
    "pyav:single_pass:bidir"."""
    decoder, _, rest = strategy.partition(":")
    shape, _, skip = rest.partition(":")
    if shape not in DECODERS.get(decoder, ()):
        known = ", ".join(f"{d}:{s}" for d, shapes in DECODERS.items() for s in shapes)
        raise VideoError(f"unknown strategy {strategy!r} (known: {known}, optionally :<skip level>)")
    if skip and skip not in info["skips"]:
        known = ", ".join(info["skips"]) or "none"
        raise VideoError(f"skip level {skip!r} is not known for this video (known: {known})")
    return decoder, shape, skip or None


def extract_frames(
    src: str,
    sampling: Sampling = Sampling(),
    *,
    threads: int = 0,
    strategy: str | None = None,
) -> VideoResult:
    """Frames of a video file or URL (mp4, mkv, webm, gif, ...) as ``sampling`` says.
    ``threads`` caps the decoder's threads (0: about one per core). ``strategy`` forces a
    decoder and shape ("pyav:single_pass", "ffmpeg:seek"), optionally with a skip level
    ("pyav:single_pass:bidir"), instead of ``choose_decoder``, ``choose_skip`` and
    ``choose_strategy``."""
    started = time.monotonic()
    deadline = Deadline(sampling.timeout_s)
    source = None
    try:
        source = OpenInput(input_url(src), deadline, threads)
        info = source.probe()
    except Exception as err:  # never raise out of extract_*
        if source is not None:
            source.close()
        return failed(str(err) if isinstance(err, VideoError) else f"{type(err).__name__}: {err}", started)
    fields = dict(
        duration_s=info["duration_s"], width=info["width"], height=info["height"], codec=info["codec"],
        fps_native=info["fps_native"], n_frames=info["n_frames"], rotation=info["rotation"],
    )
    try:
        if strategy:
            decoder, shape, skip = _forced(strategy, info)
        else:
            decoder, shape, skip = choose_decoder(info, threads), None, choose_skip(info, sampling.fps)
        exact = make_plan(info, sampling)
        plan = make_plan(info, sampling, skip) if skip else exact
        shape = shape or choose_strategy(info, plan.thresholds, skip, decoder=decoder)
    except (VideoError, ValueError) as err:
        source.close()
        return failed(str(err), started, **fields)
    out = Output(output_size(info["width"], info["height"], sampling.max_side), sampling.quality, threads)
    name = f"{decoder}:{shape}:{skip}" if skip else f"{decoder}:{shape}"
    result = VideoResult(status="ok", strategy=name, **fields)
    frames = _decode(source, info, plan, exact, decoder, shape, out, deadline, result)
    result.frames = finishing(result, frames, started)
    return result
