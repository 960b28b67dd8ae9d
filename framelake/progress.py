"""Console progress of a run: per stage, the items done of a total, and a rate.

The driver drives it: the pipeline opens a stage (``with ctx.progress.stage("frames")``), the
stage says how much work it has once it knows (``ctx.progress.total(n, "videos")``) and
advances as waves or batches complete (``ctx.progress.advance(n)``); a stage that returns has
done all of its items. Nothing here asks Spark, so it works the same over Spark Connect.

On a terminal the stage's line is redrawn in place; anywhere else (CI, Databricks driver
logs) it prints plain lines: when the stage starts, when its total is known, on progress at
most every ``log_every_s``, as a heartbeat while nothing moves, and when it ends.
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, TextIO

_BAR_WIDTH = 24
_CLEAR_LINE = "\r\x1b[2K"


@dataclass
class StageProgress:
    """What one stage has done so far."""

    stage: str
    unit: str = "items"
    total: int | None = None
    done: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    failed: bool = False

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float | None:
        """Items per second, once there are any."""
        return self.done / self.elapsed_s if self.done and self.elapsed_s > 0 else None

    def counted(self) -> str:
        return f"{self.done}/{self.total} {self.unit}" if self.total is not None else f"{self.done} {self.unit}"

    def rate_text(self) -> str:
        return f"{format_rate(self.rate)} {self.unit}/s" if self.rate is not None else f"- {self.unit}/s"

    @property
    def counting(self) -> bool:
        """Whether the stage has said what it counts (a stage without hooks shows time only)."""
        return self.total is not None or self.done > 0

    def counts_text(self, separator: str) -> str:
        """Counts and rate, each followed by ``separator``; empty while the stage counts nothing."""
        return f"{self.counted()}{separator}{self.rate_text()}{separator}" if self.counting else ""

    def bar(self) -> str:
        if not self.total:
            return ""
        filled = min(_BAR_WIDTH, _BAR_WIDTH * self.done // self.total)
        return "[" + "#" * filled + "." * (_BAR_WIDTH - filled) + "] "

    def as_dict(self) -> dict:
        return {"done": self.done, "total": self.total, "unit": self.unit}


def format_rate(rate: float) -> str:
    """Two significant digits below 10 per second (0.046, 3.1), whole numbers above."""
    return f"{rate:,.0f}" if rate >= 10 else f"{rate:.2g}"


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}" if minutes >= 60 else f"{minutes}:{secs:02d}"


class Progress:
    """Per-stage progress shown on ``stream``; ``Progress.quiet()`` counts without printing."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False,
                 redraw_s: float = 0.2, log_every_s: float = 30.0):
        self.stream = stream if stream is not None else sys.stdout
        self.quiet_mode = quiet
        self.tty = not quiet and _isatty(self.stream)
        self.redraw_s = redraw_s
        self.log_every_s = log_every_s
        self.stages: list[StageProgress] = []
        self._current: StageProgress | None = None
        self._last_line = 0.0
        self._lock = threading.Lock()

    @classmethod
    def quiet(cls) -> "Progress":
        """Counts for the run record, prints nothing: the default of a Context (tests, notebooks)."""
        return cls(quiet=True)

    def last(self, stage: str) -> StageProgress | None:
        """The most recent progress of ``stage``."""
        return next((s for s in reversed(self.stages) if s.stage == stage), None)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[StageProgress]:
        """Show ``name`` while the block runs; on a normal exit all its items are done."""
        state = StageProgress(name)
        with self._lock:
            self._current = state
            self.stages.append(state)
            self._show(state, news="started")
        stop = threading.Event()
        ticker = threading.Thread(target=self._tick, args=(state, stop), name=f"progress-{name}", daemon=True)
        if not self.quiet_mode:
            ticker.start()
        try:
            yield state
        except BaseException:
            state.failed = True
            raise
        else:
            if state.total is not None:
                state.done = max(state.done, state.total)
        finally:
            stop.set()
            if ticker.is_alive():
                ticker.join()
            with self._lock:
                state.finished = time.monotonic()
                self._current = None
                self._end(state)

    def total(self, n: int, unit: str = "items") -> None:
        """The current stage has ``n`` items of ``unit`` to do (no-op outside a stage)."""
        with self._lock:
            if self._current is not None:
                self._current.total, self._current.unit = int(n), unit
                self._show(self._current, news=f"{n} {unit} to do")

    def advance(self, n: int = 1) -> None:
        """``n`` more items of the current stage are done (no-op outside a stage)."""
        with self._lock:
            if self._current is not None:
                self._current.done += int(n)
                self._show(self._current)

    # -- rendering (called with the lock held) --------------------------------------------
    def _show(self, state: StageProgress, news: str | None = None) -> None:
        """Redraw the terminal line; elsewhere log ``news``, or the counts at most every log_every_s."""
        if self.quiet_mode:
            return
        if self.tty:
            self._write(f"{_CLEAR_LINE}[{state.stage}] {state.bar()}{state.counts_text('  ')}"
                        f"{_clock(state.elapsed_s)}")
        elif news is not None:
            self._log(state, news)
        elif time.monotonic() - self._last_line >= self.log_every_s:
            self._log(state, f"{state.counts_text(', ')}{_clock(state.elapsed_s)} elapsed")

    def _end(self, state: StageProgress) -> None:
        if self.quiet_mode:
            return
        outcome = f"{'failed after' if state.failed else 'done in'} {state.elapsed_s:.1f}s"
        text = f"{state.counted()} {outcome} ({state.rate_text()})" if state.counting else outcome
        if self.tty:
            self._write(f"{_CLEAR_LINE}[{state.stage}] {state.bar()}{text}\n")
        else:
            self._log(state, text)

    def _log(self, state: StageProgress, text: str) -> None:
        self._write(f"[{state.stage}] {text}\n")
        self._last_line = time.monotonic()

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def _tick(self, state: StageProgress, stop: threading.Event) -> None:
        """Keeps the clock moving on a terminal; a heartbeat line elsewhere."""
        interval = self.redraw_s if self.tty else self.log_every_s
        while not stop.wait(interval):
            with self._lock:
                if self._current is state:
                    self._show(state)


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal
        return False
