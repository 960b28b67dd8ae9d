"""The sampling plan of a video: which frame each target takes, which ``-skip_frame`` level
and which strategy decode it.

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
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from udfs.sampling import sample_timestamps
from udfs.video.inputs import VideoError
from udfs.video.probe import ProbeInfo
from udfs.video.sampling_spec import Sampling

# Strategy costs, in seconds, as measured: a seek's fixed cost (an ffmpeg run's start-up:
# process, open, probe; in-process, a seek and a decoder flush), and the H.264 decode time
# per pixel; only their ratios matter for the choice.
SEEK_S = {"ffmpeg": 0.05, "pyav": 0.002}
DECODE_S_PER_PIXEL = 1.2e-9
# With several threads, ffmpeg's run decodes faster than the in-process decoder from about this
# much decoding on (its start-up is ~0.05 s).
FFMPEG_PAYS_S = 1.0
# The furthest a returned frame may lie from its target timestamp, and the part of it a skip
# level may use up (the rest absorbs rounding and frame durations).
MAX_OFFSET_S = 0.1
SKIP_OFFSET_S = 0.09
# ffmpeg ``-skip_frame`` levels, most frames skipped first: "bidir" decodes I- and P-frames only,
# "noref" also the B-frames other frames reference.
SKIP_LEVELS = ("bidir", "noref")
# Slack for float rounding between Python, ffmpeg's expressions and its microsecond seeks.
TIME_EPSILON_S = 1e-6


@dataclass(frozen=True)
class Plan:
    targets: list[float]  # planned timestamps, relative
    thresholds: list[float]  # per target: take the first decoded frame at or after this, relative
    grid_origin_s: float  # thresholds[k] lies on grid_origin_s + j/fps (before the tail clamp)
    fps: float
    last_frame_s: float
    on_grid: bool  # the targets are every grid point (not subsampled to max_frames)
    skip: str | None  # the -skip_frame level; None decodes every frame (exact)
    first_index: int = 0  # frame_index of targets[0]

    def tail(self, index: int) -> Plan:
        """The plan for ``targets[index:]``."""
        return replace(self, targets=self.targets[index:], thresholds=self.thresholds[index:],
                       first_index=self.first_index + index)


def make_plan(info: ProbeInfo, sampling: Sampling, skip: str | None = None) -> Plan:
    """The plan of ``sampling``'s targets at the ``skip`` level (None: every frame decoded)."""
    fps, start_s, end_s = sampling.fps, sampling.start_s, sampling.end_s
    targets = sample_timestamps(info["duration_s"], fps, start_s, end_s, sampling.max_frames)
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
    return Plan(
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


def choose_decoder(info: ProbeInfo, threads: int) -> str:
    """"pyav" (in-process, from the file the probe opened) unless the decoder has several
    threads and the video is long enough for an ffmpeg run's pipeline (demuxing, decoding,
    scaling and encoding on threads of their own) to pay for its start-up: ``FFMPEG_PAYS_S``
    of decoding. On one thread, as a Spark task has by default, the in-process decoder is as
    fast per frame and saves the process start and the second open (docs/measurements.md)."""
    if threads == 1:
        return "pyav"
    decode_s = info["n_frames"] * info["width"] * info["height"] * DECODE_S_PER_PIXEL
    return "ffmpeg" if decode_s > FFMPEG_PAYS_S else "pyav"


def choose_strategy(info: ProbeInfo, thresholds: Sequence[float], skip: str | None = None, *,
                    decoder: str = "pyav") -> str:
    """"seek" (a seek per target, to the keyframe before it) when that decodes less than
    "single_pass" (one pass decoding every frame of the sampled span) by the cost model below,
    counting only the frames the ``skip`` level decodes and the ``decoder``'s cost of a seek.
    Only for containers where seeking is exact (``ProbeInfo.seekable``)."""
    if not info["seekable"] or not info["fps_native"]:
        return "single_pass"
    decoded = info["skips"][skip].fraction if skip else 1.0
    frame_s = info["width"] * info["height"] * DECODE_S_PER_PIXEL * decoded
    span_frames = (thresholds[-1] - thresholds[0]) * info["fps_native"] + info["gop"] / 2
    single_pass_s = SEEK_S[decoder] + span_frames * frame_s
    seek_s = len(set(thresholds)) * (SEEK_S[decoder] + (info["gop"] / 2 + 1) * frame_s)
    return "seek" if seek_s < single_pass_s else "single_pass"
