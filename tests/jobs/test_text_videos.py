"""Text videos (the ``t2vid_text`` format) through the real pipeline: normalize renders the
pages, frames reads them, tokens counts them."""
from __future__ import annotations

from framelake.runtime import Context
from jobs.pipeline import run_stages
from tests.support.config import demo_config
from tests.support.paths import FORMATS

FIXTURE = FORMATS / "t2vid_text" / "longalpaca_text.json"


def test_text_videos_flow_through_the_pipeline(spark, tmp_path):
    source = {"name": "longalpaca", "format": "t2vid_text", "annotations": str(FIXTURE)}
    ctx = Context.create(demo_config(str(tmp_path / "lake"), sources=[source]), spark)
    results = {r.stage: r for r in run_stages(ctx, ["normalize", "frames", "tokens"], echo=lambda line: None)}
    assert results["normalize"].counts["samples"] == 5 and results["normalize"].counts["rejects"] == 0

    videos = [row.asDict() for row in ctx.lake.read("videos").collect()]
    assert len(videos) == 5 and {v["status"] for v in videos} == {"ok"}
    frames = [row.asDict() for row in ctx.lake.read("frames").collect()]
    assert len(frames) == 2 + 1 + 3 + 1 + 1  # the last, Chinese
    assert {(f["width"], f["height"]) for f in frames} == {(448, 448)}
    lengths = [row.asDict() for row in ctx.lake.read("token_lengths").collect()]
    assert lengths and all(row["n_frames"] >= 1 for row in lengths)
