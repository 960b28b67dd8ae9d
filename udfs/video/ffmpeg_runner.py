"""Running the bundled ffmpeg (driven through ffmpeg-python) with a hard timeout. Frames
stream out of its pipe one at a time, so memory stays bounded whatever the video's length."""
from __future__ import annotations

import collections
import subprocess
import threading
from collections.abc import Iterator

import av
import ffmpeg
import imageio_ffmpeg

from udfs.video.inputs import Deadline, VideoError, av_message


def ffmpeg_exe() -> str:
    """Path of the static ffmpeg shipped by imageio-ffmpeg."""
    return imageio_ffmpeg.get_ffmpeg_exe()


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
                raise VideoError(f"reading ffmpeg output: {av_message(err)}") from None
            return  # ffmpeg succeeded but wrote no frame (a seek past the data): a NUT header only
        run.finish()
    finally:
        run.close()
