"""Progress of real stage runs, as a terminal shows it and as a log (CI, Databricks) records it."""
from __future__ import annotations

import io
import os
import pty
import re
import threading

import pytest

from framelake.progress import Progress
from framelake.runtime import Context
from jobs.pipeline import run_stages
from tests.support.config import demo_config


@pytest.fixture
def fresh_context(spark, tmp_path):
    def make(progress: Progress) -> Context:
        return Context.create(demo_config(str(tmp_path / "lake")), spark, progress=progress)

    return make


def test_plain_lines_when_stdout_is_not_a_terminal(fresh_context):
    log = io.StringIO()
    ctx = fresh_context(Progress(log, log_every_s=3600))  # no heartbeat between the lines checked
    [result] = run_stages(ctx, ["normalize"], echo=lambda line: None)
    units = result.counts["units"]
    lines = log.getvalue().splitlines()
    assert lines[0] == "[normalize] started"
    assert lines[1] == f"[normalize] {units} units to do"
    assert re.fullmatch(rf"\[normalize\] {units}/{units} units done in \d+\.\ds \([\d.,]+ units/s\)", lines[-1])
    assert all(line.startswith("[normalize] ") for line in lines)
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()


def test_redrawn_in_place_on_a_terminal(fresh_context):
    controller, terminal = pty.openpty()
    screen = bytearray()

    def read_screen():
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal side was closed
                return
            if not chunk:
                return
            screen.extend(chunk)

    reader = threading.Thread(target=read_screen)
    reader.start()
    with open(terminal, "w", closefd=True) as stream:
        progress = Progress(stream, redraw_s=0.05)
        assert progress.tty
        [result] = run_stages(fresh_context(progress), ["normalize"], echo=lambda line: None)
    reader.join(timeout=30)
    os.close(controller)
    text = screen.decode("utf-8")
    units = result.counts["units"]
    redraws = text.split("\r\x1b[2K")[1:]
    assert len(redraws) >= 3  # started, total known, done (the clock adds more)
    assert all(draw.startswith("[normalize] ") for draw in redraws)
    assert text.count("\n") == 1 and text.endswith("\n")  # one line, redrawn, closed when done
    assert f"[normalize] [{'.' * 24}] 0/{units} units" in text
    assert re.search(rf"\[normalize\] \[#{{24}}\] {units}/{units} units done in \d+\.\ds", redraws[-1])


def test_quiet_by_default_yet_counting(spark, tmp_path, capsys):
    ctx = Context.create(demo_config(str(tmp_path / "lake")), spark)
    assert ctx.progress.quiet_mode
    with ctx.progress.stage("frames"):
        ctx.progress.total(4, "videos")
        ctx.progress.advance(1)
        assert ctx.progress.last("frames").counted() == "1/4 videos"
    assert ctx.progress.last("frames").as_dict() == {"done": 4, "total": 4, "unit": "videos"}
    assert capsys.readouterr().out == ""


def test_a_failing_stage_is_shown_failed_and_outside_a_stage_counts_go_nowhere():
    log = io.StringIO()
    progress = Progress(log)
    progress.advance(3)  # a stage run on its own, without a display
    with pytest.raises(RuntimeError), progress.stage("tokens"):
        progress.total(10, "samples")
        progress.advance(4)
        raise RuntimeError("tokenizer missing")
    assert progress.last("tokens").failed
    assert re.fullmatch(r"\[tokens\] 4/10 samples failed after \d+\.\ds \([\d.,e+-]+ samples/s\)",
                        log.getvalue().splitlines()[-1])
