"""The frames stage as a Spark job on a real Delta lake: waves committed one by one, reruns that
skip what is done, failed media retried and replaced, and what a killed run leaves redone."""
from __future__ import annotations

import os
import shutil
from collections import Counter

import pytest
from deltalake import DeltaTable

from framelake import failpoints
from framelake.failpoints import FailpointError
from framelake.runtime import Context
from jobs import frames as frames_job
from jobs.frames import wave_tasks
from tests.support.config import demo_config
from tests.support.videos import make_corrupt_video, make_numbered_video, make_test_video
from udfs.sample import make_media
from udfs.schemas import SAMPLES, to_spark_schema
from udfs.sql import sql_in

SETTINGS = {"fps": 2.0, "max_frames": 3, "max_side": 64, "quality": 5, "timeout_s": 30.0, "wave_size": 2}


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("job_media")
    for i in range(4):
        make_test_video(d / f"clip_{i}.mp4", seconds=1.0 + i * 0.5, size=(96, 64), gop=12)
    make_numbered_video(d / "numbered.mp4", seconds=2.0)
    make_corrupt_video(d / "broken.mp4")
    return d


def lake_with_samples(spark, tmp_path, media_dir, **settings) -> Context:
    """A fresh lake whose ``samples`` table references every file of ``media_dir``, one file
    twice (two samples, one clip) and a missing file."""
    ctx = make_context(spark, tmp_path, **settings)
    uris = sorted(str(p) for p in media_dir.iterdir()) + [str(media_dir / "missing.mp4")]
    rows = [sample_row(i, uri) for i, uri in enumerate(uris)] + [sample_row(len(uris), uris[0])]
    ctx.lake.write("samples", spark.createDataFrame(rows, to_spark_schema(SAMPLES)))
    return ctx


def make_context(spark, tmp_path, **settings) -> Context:
    config = demo_config(str(tmp_path / "lake"), frames={**SETTINGS, **settings})
    return Context.create(config, spark)


def sample_row(index: int, uri: str) -> dict:
    return {
        "sample_id": f"s{index}", "source": "test", "format": "llava", "media_type": "video",
        "media": [make_media("video", uri)],
        "conversations": [{"role": "user", "content": "<media>\nWhat happens?"},
                          {"role": "assistant", "content": "Things."}],
        "in_context": [], "language": "en", "source_file": "test.json", "record_index": index, "raw": "{}",
    }


def table(ctx: Context, name: str) -> list[dict]:
    return DeltaTable(ctx.lake.table_uri(name)).to_pyarrow_table().to_pylist()


def by_file(videos: list[dict]) -> dict[str, dict]:
    return {os.path.basename(v["uri"]): v for v in videos}


def assert_consistent(ctx: Context) -> None:
    """One row per video and per frame; every frame belongs to an ok video, which has exactly
    its ``n_frames`` frames, each an existing JPEG of the configured size."""
    videos, frames = table(ctx, "videos"), table(ctx, "frames")
    assert len({v["video_id"] for v in videos}) == len(videos)
    assert len({(f["video_id"], f["frame_index"]) for f in frames}) == len(frames)
    ok = {v["video_id"]: v for v in videos if v["status"] == "ok"}
    per_video = Counter(f["video_id"] for f in frames)
    assert set(per_video) == set(ok)
    for video_id, video in ok.items():
        assert per_video[video_id] == video["n_frames"] > 0
    for frame in frames:
        assert os.path.getsize(frame["uri"]) == frame["bytes"]
        assert max(frame["width"], frame["height"]) <= ctx.config.frames.max_side


def test_waves_commit_one_by_one_then_a_rerun_retries_only_failures(spark, tmp_path, media_dir):
    ctx = lake_with_samples(spark, tmp_path, media_dir)
    first = frames_job.stage(ctx)
    assert first.counts["media"] == 7 and first.counts["reused"] == 0
    assert (first.counts["ok"], first.counts["failed"]) == (5, 2)
    # Each wave appended its rows in a commit of its own (a killed run keeps finished waves).
    assert first.counts["waves"] >= 2
    videos_history = DeltaTable(ctx.lake.table_uri("videos")).history()
    assert len(videos_history) == first.counts["waves"]
    assert {h["operation"] for h in videos_history} <= {"WRITE", "CREATE TABLE"}
    videos = by_file(table(ctx, "videos"))
    assert "invalid data" in videos["broken.mp4"]["error"]
    assert videos["missing.mp4"]["error"] == "file not found"
    assert all(v["status"] == "ok" for name, v in videos.items() if name not in ("broken.mp4", "missing.mp4"))
    assert_consistent(ctx)
    frames_before = {(f["video_id"], f["frame_index"]): f["sha256"] for f in table(ctx, "frames")}

    # The broken file gets fixed; the missing one stays missing.
    shutil.copy(media_dir / "numbered.mp4", tmp_path / "fixed.mp4")
    os.replace(tmp_path / "fixed.mp4", media_dir / "broken.mp4")
    try:
        second = frames_job.stage(ctx)
    finally:
        make_corrupt_video(media_dir / "broken.mp4")  # as the module fixture made it
    assert (second.counts["media"], second.counts["reused"]) == (2, 5)
    assert (second.counts["ok"], second.counts["failed"]) == (1, 1)
    videos = by_file(table(ctx, "videos"))
    assert len(videos) == 7
    assert videos["broken.mp4"]["status"] == "ok" and videos["broken.mp4"]["error"] is None
    assert videos["missing.mp4"]["status"] == "failed"
    assert_consistent(ctx)
    frames_after = {(f["video_id"], f["frame_index"]): f["sha256"] for f in table(ctx, "frames")}
    fixed_id = videos["broken.mp4"]["video_id"]
    assert {k: v for k, v in frames_after.items() if k[0] != fixed_id} == frames_before
    # The missing one fails again the same way: tried again, and nothing written.
    versions = (ctx.lake.info("videos").version, ctx.lake.info("frames").version)
    third = frames_job.stage(ctx)
    assert (third.counts["media"], third.counts["failed"]) == (1, 1)
    assert (ctx.lake.info("videos").version, ctx.lake.info("frames").version) == versions


def test_a_killed_run_redoes_only_what_was_not_committed(spark, tmp_path, media_dir):
    ctx = lake_with_samples(spark, tmp_path, media_dir, wave_size=16)
    assert frames_job.stage(ctx).counts["ok"] == 5
    videos = by_file(table(ctx, "videos"))
    frames_total = len(table(ctx, "frames"))
    # What a kill leaves: a wave killed between its frames and its videos commits (frames
    # rows, no videos rows), and a wave killed before committing anything.
    between = [videos["clip_0.mp4"]["video_id"], videos["clip_1.mp4"]["video_id"]]
    before = videos["clip_2.mp4"]["video_id"]
    ctx.lake.delete("videos", sql_in("video_id", [*between, before]))
    ctx.lake.delete("frames", sql_in("video_id", [before]))

    rerun = frames_job.stage(ctx)
    # The 3 uncommitted media and the 2 failed ones; the other 2 ok ones are reused.
    assert (rerun.counts["media"], rerun.counts["reused"], rerun.counts["ok"]) == (5, 2, 3)
    assert len(table(ctx, "videos")) == 7
    assert len(table(ctx, "frames")) == frames_total
    assert_consistent(ctx)


def test_a_failed_commit_stops_the_stage_and_a_rerun_does_the_rest(spark, tmp_path, media_dir, monkeypatch):
    """A wave is committed while the next one extracts; an error in a commit still stops the
    stage, the waves committed before it stay, and a rerun finishes the rest."""
    ctx = lake_with_samples(spark, tmp_path, media_dir)  # waves of 2 media
    monkeypatch.setitem(failpoints._ARMED, "frames.between_commits", ("raise", 2))
    monkeypatch.setattr(failpoints, "_hits", {})
    with pytest.raises(FailpointError):
        frames_job.stage(ctx)  # the second wave: its frames committed, its videos not
    kept = table(ctx, "videos")
    assert 0 < len(kept) < 7

    monkeypatch.delitem(failpoints._ARMED, "frames.between_commits")
    rerun = frames_job.stage(ctx)
    ok_kept = {v["video_id"]: v for v in kept if v["status"] == "ok"}
    assert (rerun.counts["media"], rerun.counts["reused"]) == (7 - len(ok_kept), len(ok_kept))
    videos = {v["video_id"]: v for v in table(ctx, "videos")}
    assert len(videos) == 7 and {k: videos[k] for k in ok_kept} == ok_kept
    assert_consistent(ctx)


def test_new_sampling_parameters_replace_old_frames(spark, tmp_path, media_dir):
    ctx = lake_with_samples(spark, tmp_path, media_dir, wave_size=16)
    frames_job.stage(ctx)
    wider = make_context(spark, tmp_path, wave_size=16, max_side=80, max_frames=2)
    rerun = frames_job.stage(wider)
    assert (rerun.counts["media"], rerun.counts["reused"]) == (7, 0)
    frames = table(wider, "frames")
    assert {max(f["width"], f["height"]) for f in frames} == {80}
    assert Counter(Counter(f["video_id"] for f in frames).values()) == {2: 5}
    assert_consistent(wider)


def test_wave_tasks_pack_small_videos_biggest_first_and_group_stills():
    mb = 1 << 20
    sizes = [None, 900 * mb, 5 * mb, 4 * mb, 3 * mb] + [mb // 2] * 100
    videos = [{"kind": "video", "i": i} for i in range(len(sizes))]
    stills = [{"kind": "image", "i": i} for i in range(130)]
    tasks = wave_tasks(videos + stills, sizes + [None] * len(stills))
    video_tasks = [[m["i"] for m in t] for t in tasks if t[0]["kind"] == "video"]
    # 962 MB over at least 64 tasks: ~15 MB a task, but never over TASK_BYTES (8 MB)
    assert video_tasks[:4] == [[0], [1], [2], [3, 4, 5, 6]]  # unknown size first; 4 + 3 + 2 halves = 8 MB
    assert [len(t) for t in video_tasks[4:]] == [16] * 6 + [2]  # 16 half-megabytes = 8 MB
    assert sorted(i for t in video_tasks for i in t) == list(range(len(sizes)))
    assert [len(t) for t in tasks[len(video_tasks):]] == [64, 64, 2]
    assert sorted(m["i"] for t in tasks[len(video_tasks):] for m in t) == list(range(130))


def test_wave_tasks_keep_a_task_for_each_video_of_a_small_wave():
    mb = 1 << 20
    tasks = wave_tasks([{"kind": "video", "i": i} for i in range(10)], [mb] * 10)
    assert len(tasks) == 10  # 10 MB over 64 tasks is less than a video: one each


def test_sql_in_quotes_values():
    assert sql_in("video_id", ["a", "it's"]) == "video_id IN ('a', 'it''s')"
