"""The plan's shapes as runs of the bundled ffmpeg: "single_pass" (one run over the sampled
span, a ``select`` filter keeping the plan's frames) and "seek" (one run per target). A run
pipelines demuxing, decoding, scaling and encoding on threads of its own, and is killed at the
deadline whatever the decoder does."""
from __future__ import annotations

import math
from collections.abc import Iterator

import ffmpeg

from udfs.video.ffmpeg_runner import jpeg_stream
from udfs.video.inputs import Deadline, input_options
from udfs.video.plan import TIME_EPSILON_S, Plan
from udfs.video.probe import OpenInput, ProbeInfo
from udfs.video.sampling_spec import Output

# Up to this many subsampled targets, ``select`` names each one (~45 bytes each: the filter
# graph stays far below the 128 KiB a command-line argument may hold).
MAX_SELECT_THRESHOLDS = 1000


def _frame_spec(
    url: str, info: ProbeInfo, seek_s: float, skip: str | None, out: Output, *,
    select: str | None = None, max_frames: int | None = None,
):
    """ffmpeg command: from ``seek_s`` (ffmpeg's exact seek: from the keyframe before it,
    dropping decoded frames before it), the probed video stream decoded at ``-skip_frame
    skip``, optionally a ``select`` filter, scaled to ``out.size``, as MJPEG in NUT. ``-f``
    forces the demuxer the probe saw, so a server cannot switch formats between runs."""
    input_args = {"f": info["format"], **input_options(url)}
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


def _select(info: ProbeInfo, plan: Plan) -> str:
    """The ``select`` expression keeping the first frame at or after each threshold.

    Subsampled targets are named one by one: a bisection counts the thresholds passed
    (variable 1) and a frame is kept when the count grows past the last kept one's (variable 0).
    Every grid point, or too many targets to name, use the grid: variable 0 holds the next grid
    threshold (as an offset from the first, so it starts at 0), plus the last frame for targets
    clamped to it; the assignment in ``decode`` discards grid frames that T2Vid's subsampling
    dropped."""
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


def single_pass(source: OpenInput, info: ProbeInfo, plan: Plan, out: Output,
                deadline: Deadline) -> Iterator[tuple[float, bytes]]:
    """One run over the sampled span, ``_select`` keeping the frames of the plan."""
    # Seeking to the start only where seeking is exact; elsewhere decode from the beginning.
    seek_s = plan.thresholds[0] if info["seekable"] else 0.0
    spec = _frame_spec(source.url, info, seek_s, plan.skip, out, select=_select(info, plan))
    for pts, jpeg in jpeg_stream(spec, deadline):
        yield pts - info["start_time_s"], jpeg


def seek_each(source: OpenInput, info: ProbeInfo, plan: Plan, out: Output,
              deadline: Deadline) -> Iterator[tuple[float, bytes]]:
    """One run per distinct threshold, each taking the first decoded frame at or after it."""
    last = -math.inf
    for threshold in plan.thresholds:
        if threshold <= last + TIME_EPSILON_S:
            continue  # the frame already yielded serves this target too (a VFR gap)
        spec = _frame_spec(source.url, info, threshold, plan.skip, out, max_frames=1)
        for pts, jpeg in jpeg_stream(spec, deadline):
            last = pts - info["start_time_s"]
            yield last, jpeg

