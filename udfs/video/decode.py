"""``extract_frames``: a video's plan decoded by the chosen strategy, each target given its
decoded frame, with the exact fallback where a skip level left a target too far off."""
from __future__ import annotations

import time
from collections.abc import Iterator

from udfs.video.inputs import Deadline, VideoError, input_url
from udfs.video.plan import MAX_OFFSET_S, TIME_EPSILON_S, Plan, choose_skip, choose_strategy, make_plan
from udfs.video.probe import ProbeInfo, probe_url
from udfs.video.results import Frame, VideoResult, failed, finishing
from udfs.video.sampling_spec import Sampling, output_size
from udfs.video.strategies import STRATEGIES, Output


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


def _decode(url: str, info: ProbeInfo, plan: Plan, exact: Plan, shape: str, out: Output, deadline: Deadline,
            result: VideoResult) -> Iterator[Frame]:
    """The plan's frames by ``shape``. When its skip level leaves a target too far from a
    frame, the rest of the targets come from the ``exact`` plan (noted in ``result.strategy``)."""
    try:
        yield from _assign(plan, STRATEGIES[shape](url, info, plan, out, deadline), out.size)
    except _OffTarget as miss:
        rest = exact.tail(miss.index)
        result.strategy = f"{result.strategy}+exact@{miss.index}"
        strategy = STRATEGIES[choose_strategy(info, rest.thresholds)]
        yield from _assign(rest, strategy(url, info, rest, out, deadline), out.size)


def _forced(strategy: str, info: ProbeInfo) -> tuple[str, str | None]:
    """(shape, skip level) of a forced strategy such as "seek" or "single_pass:bidir"."""
    shape, _, skip = strategy.partition(":")
    if shape not in STRATEGIES:
        raise VideoError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)}, optionally :<skip level>)")
    if skip and skip not in info["skips"]:
        known = ", ".join(info["skips"]) or "none"
        raise VideoError(f"skip level {skip!r} is not known for this video (known: {known})")
    return shape, skip or None


def extract_frames(
    src: str,
    sampling: Sampling = Sampling(),
    *,
    threads: int = 0,
    strategy: str | None = None,
) -> VideoResult:
    """Frames of a video file or URL (mp4, mkv, webm, gif, ...) as ``sampling`` says.
    ``threads`` caps ffmpeg's threads (0: ffmpeg's choice, about one per core). ``strategy``
    forces "single_pass" or "seek", optionally with a skip level ("single_pass:bidir"),
    instead of ``choose_skip`` and ``choose_strategy``."""
    started = time.monotonic()
    deadline = Deadline(sampling.timeout_s)
    try:
        url = input_url(src)
        info = probe_url(url, deadline)
    except VideoError as err:
        return failed(str(err), started)
    except Exception as err:  # never raise out of extract_*
        return failed(f"{type(err).__name__}: {err}", started)
    fields = dict(
        duration_s=info["duration_s"], width=info["width"], height=info["height"], codec=info["codec"],
        fps_native=info["fps_native"], n_frames=info["n_frames"], rotation=info["rotation"],
    )
    try:
        shape, skip = _forced(strategy, info) if strategy else (None, choose_skip(info, sampling.fps))
        exact = make_plan(info, sampling)
        plan = make_plan(info, sampling, skip) if skip else exact
        shape = shape or choose_strategy(info, plan.thresholds, skip)
    except (VideoError, ValueError) as err:
        return failed(str(err), started, **fields)
    out = Output(output_size(info["width"], info["height"], sampling.max_side), sampling.quality, threads)
    result = VideoResult(status="ok", strategy=f"{shape}:{skip}" if skip else shape, **fields)
    result.frames = finishing(result, _decode(url, info, plan, exact, shape, out, deadline, result), started)
    return result
