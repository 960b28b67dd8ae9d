"""The whole pipeline on the demo corpus, on both engines, read back with delta-rs (an independent
reader for either)."""
from __future__ import annotations

import glob
import hashlib
import json
import os

import pytest
from deltalake import DeltaTable

from tests.support.paths import REPO
from tests.support.tables import GENERATE_TABLES, comparable_rows, written_tables
from udfs.schemas import TABLES

DEMO = REPO / "demo" / "annotations"


def records_in_demo_sources() -> dict[str, int]:
    """Records per source, counted straight from the files: array elements or jsonl lines."""
    def array_len(path):
        with open(path, encoding="utf-8") as f:
            return len(json.load(f))

    def line_count(pattern):
        return sum(1 for p in glob.glob(str(pattern)) for line in open(p, encoding="utf-8") if line.strip())

    return {
        "clevrer_qa": array_len(DEMO / "videochat2" / "clevrer_qa.json"),
        "coco_caption": array_len(DEMO / "videochat2" / "coco_caption.json"),
        "videoinstruct": array_len(DEMO / "videoinstruct" / "videoinstruct_100k.json"),
        "sharegemini": line_count(DEMO / "sharegemini" / "*.jsonl"),
        "m3it_vqa": line_count(DEMO / "m3it" / "vqa_v2.jsonl"),
    }


@pytest.fixture(params=["delta-rs", "delta-spark"])
def pipeline_run(request, spark):
    """(Context, results) of the demo pipeline run on each engine."""
    return request.getfixturevalue("demo_run" if request.param == "delta-rs" else "demo_run_delta_spark")


def table(ctx, name):
    return DeltaTable(ctx.lake.table_uri(name)).to_pyarrow_table()


def test_every_table_is_a_delta_table_with_its_schema(pipeline_run):
    ctx, _ = pipeline_run
    assert set(written_tables(ctx.lake)) == set(TABLES) - set(GENERATE_TABLES)
    for name in written_tables(ctx.lake):
        schema = TABLES[name]
        dt = DeltaTable(ctx.lake.table_uri(name))
        assert dt.version() >= 0
        got = dt.to_pyarrow_table()
        assert got.schema.names == schema.names, name
        assert got.num_rows > 0, f"{name} is empty"


def test_records_in_equal_samples_plus_rejects_per_source(pipeline_run):
    ctx, results = pipeline_run
    samples = table(ctx, "samples").column("source").to_pylist()
    rejects = table(ctx, "rejects").column("source").to_pylist()
    expected = records_in_demo_sources()
    for source, records in expected.items():
        assert samples.count(source) + rejects.count(source) == records, source
    normalize = next(r for r in results if r.stage == "normalize")
    assert normalize.counts["in"] == sum(expected.values())
    assert normalize.counts["samples"] == len(samples)


def test_rejects_carry_reasons_and_raw_text(pipeline_run):
    ctx, _ = pipeline_run
    rejects = table(ctx, "rejects").to_pylist()
    reasons = " | ".join(r["reason"] for r in rejects)
    assert all(r["reason"] and r["stage"] == "normalize" for r in rejects)
    assert "escapes media_root" in reasons  # ../../../etc/passwd
    assert any(r["raw"] and "etc/passwd" in r["raw"] for r in rejects)
    assert len({r["source"] for r in rejects}) >= 3


def test_sample_ids_unique_and_conversations_canonical(pipeline_run):
    ctx, _ = pipeline_run
    samples = table(ctx, "samples").to_pylist()
    ids = [s["sample_id"] for s in samples]
    assert len(ids) == len(set(ids))
    for s in samples:
        roles = [t["role"] for t in s["conversations"]]
        assert set(roles) <= {"system", "user", "assistant"}
        first_user = next(t for t in s["conversations"] if t["role"] == "user")
        assert first_user["content"].count("<media>") == len(s["media"])
    clipped = [m for s in samples for m in s["media"] if m["start_s"] is not None]
    assert clipped and all(m["end_s"] > m["start_s"] for m in clipped)


def test_corrupt_video_fails_with_a_readable_error_and_others_succeed(pipeline_run):
    ctx, _ = pipeline_run
    videos = table(ctx, "videos").to_pylist()
    corrupt = [v for v in videos if v["uri"].endswith("corrupt_0001.mp4")]
    assert len(corrupt) == 1 and corrupt[0]["status"] == "failed" and corrupt[0]["error"]
    good = [v for v in videos if v is not corrupt[0]]
    assert good and all(v["status"] == "ok" and v["n_frames"] > 0 for v in good)


def test_frames_are_jpeg_objects_matching_their_rows(pipeline_run):
    ctx, _ = pipeline_run
    frames = table(ctx, "frames").to_pylist()
    videos = {v["video_id"]: v for v in table(ctx, "videos").to_pylist()}
    for frame in frames:
        with open(frame["uri"], "rb") as f:
            data = f.read()
        assert data[:2] == b"\xff\xd8"
        assert len(data) == frame["bytes"]
        assert hashlib.sha256(data).hexdigest() == frame["sha256"]
        assert max(frame["width"], frame["height"]) <= ctx.config.frames.max_side
    per_video = {}
    for frame in frames:
        per_video[frame["video_id"]] = per_video.get(frame["video_id"], 0) + 1
    for video_id, count in per_video.items():
        assert videos[video_id]["n_frames"] == count


def test_clip_frames_lie_inside_the_clip(pipeline_run):
    ctx, _ = pipeline_run
    videos = [v for v in table(ctx, "videos").to_pylist() if v["start_s"] is not None and v["status"] == "ok"]
    assert videos
    frames = table(ctx, "frames").to_pylist()
    for video in videos:
        stamps = [f["timestamp_s"] for f in frames if f["video_id"] == video["video_id"]]
        assert stamps and all(video["start_s"] - 0.1 <= t < video["end_s"] + 0.1 for t in stamps)


def test_token_lengths_cover_every_sample_and_model(pipeline_run):
    ctx, _ = pipeline_run
    lengths = table(ctx, "token_lengths").to_pylist()
    sample_ids = set(table(ctx, "samples").column("sample_id").to_pylist())
    models = [m.name for m in ctx.config.models]
    for model in models:
        rows = [r for r in lengths if r["model"] == model]
        assert {r["sample_id"] for r in rows} == sample_ids
        for r in rows:
            assert r["total_tokens"] == r["text_tokens"] + r["visual_tokens"]
            assert r["fits"] or r["reason"]
        # The corrupt video's sample is dropped with a reason, not silently.
        assert any(not r["fits"] and "frames missing" in r["reason"] for r in rows)


def test_shards_match_the_shards_table_and_manifest(pipeline_run):
    ctx, _ = pipeline_run
    shards = table(ctx, "shards").to_pylist()
    assert {(s["model"], s["format"]) for s in shards} == {
        (m.name, f) for m in ctx.config.models for f in ctx.config.shards.formats
    }
    for shard in shards:
        with open(shard["shard_path"], "rb") as f:
            data = f.read()
        assert len(data) == shard["bytes"]
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
        manifest = json.loads(open(os.path.join(os.path.dirname(shard["shard_path"]), "manifest.json")).read())
        assert manifest["samples"] == sum(
            s["samples"] for s in shards if (s["model"], s["format"]) == (shard["model"], shard["format"])
        )


def test_every_shard_loads_with_its_consumers_rules(pipeline_run):
    """The demo's shards (VideoChat2 records with a system ``i``, M3IT's system prompts, videos,
    stills and inline images) read with each trainer's rules (tests/support/consumers.py)."""
    import pandas as pd
    import webdataset as wds

    from tests.support import consumers

    ctx, _ = pipeline_run
    open_image = consumers.image_opener(ctx.lake.root)
    checks = {"minicpmv": consumers.check_minicpmv, "llava": consumers.check_llava,
              "messages": consumers.check_messages}
    for shard in table(ctx, "shards").to_pylist():
        path, fmt = shard["shard_path"], shard["format"]
        if fmt in checks:
            records = json.load(open(path, encoding="utf-8"))
            for record in records:
                checks[fmt](record, open_image)
        elif fmt == "hf_parquet":
            records = consumers.check_hf_parquet(path, open_image)
        elif fmt == "webdataset":
            records = list(wds.WebDataset(path, shardshuffle=False).decode("pil"))
            consumers.check_webdataset(records)
        elif shard["samples"]:  # mimicit: the instructions file of a triple counts its samples
            stem = path[:-len("_instructions.json")]
            instructions, train = (json.load(open(f"{stem}{suffix}", encoding="utf-8"))
                                   for suffix in ("_instructions.json", "_train.json"))
            records = list(train)
            consumers.check_otter(instructions, train, pd.read_parquet(f"{stem}.parquet"))
        else:
            continue
        assert len(records) == shard["samples"], path


def test_webdataset_shards_read_with_webdataset(pipeline_run):
    ctx, _ = pipeline_run
    import webdataset as wds

    shards = [s for s in table(ctx, "shards").to_pylist() if s["format"] == "webdataset"]
    for shard in shards:
        samples = list(wds.WebDataset(shard["shard_path"], shardshuffle=False).decode("pil"))
        assert len(samples) == shard["samples"]
        for sample in samples:
            images = [k for k in sample if k.endswith("jpg")]
            assert images and sample["json"]["conversations"]
            assert all(sample[k].size[0] > 0 for k in images)


def test_delta_log_has_no_orphaned_commits(pipeline_run):
    ctx, _ = pipeline_run
    for name in written_tables(ctx.lake):
        log = ctx.lake.table_uri(name) + "/_delta_log"
        entries = sorted(os.listdir(log))
        commits = [e for e in entries if e.endswith(".json")]
        assert [int(c.split(".")[0]) for c in commits] == list(range(len(commits))), name
        assert not [e for e in entries if "tmp" in e.lower()], name
        dt = DeltaTable(ctx.lake.table_uri(name))
        assert all(os.path.isfile(p) for p in dt.file_uris()), name


@pytest.mark.parametrize("name", ["samples", "frames", "token_lengths"])
def test_spark_reads_the_same_rows_as_delta_rs(pipeline_run, name):
    ctx, _ = pipeline_run
    assert ctx.lake.read(name).count() == DeltaTable(ctx.lake.table_uri(name)).to_pyarrow_table().num_rows


def test_both_engines_make_the_same_tables(demo_run, demo_run_delta_spark):
    (rs, _), (spark_ctx, _) = demo_run, demo_run_delta_spark
    assert (rs.lake.engine, spark_ctx.lake.engine) == ("delta-rs", "delta-spark")
    renames = {rs.lake.root: "<lake>", spark_ctx.lake.root: "<lake>"}
    assert written_tables(spark_ctx.lake) == written_tables(rs.lake)
    for name in written_tables(rs.lake):
        assert comparable_rows(spark_ctx.lake, name, renames) == comparable_rows(rs.lake, name, renames), name


def inspected_checksums(config: str) -> dict[str, str]:
    """``framelake inspect --checksum``'s rows and checksum per table."""
    import subprocess
    import sys

    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "framelake"), "inspect", "--config",
                             config, "--checksum", "--history", "0"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    return {row[0]: (row[1], row[-1]) for row in rows}


def test_engines_writing_one_lake_in_turn_make_a_single_engine_run_s_tables(spark, tmp_path):
    from framelake.runtime import Context
    from jobs.pipeline import run_stages
    from tests.support.config import demo_config, write_config

    root = tmp_path / "lake"
    one_model = [{"name": "minicpm-llama3-v2_5", "profile": "minicpm-llama3-v2_5"}]
    turns = {"normalize": "delta-spark", "frames": "delta-rs", "tokens": "delta-spark", "shards": "delta-rs"}
    for stage, engine in turns.items():
        ctx = Context.create(demo_config({"root": str(root), "engine": engine}, models=one_model), spark)
        run_stages(ctx, [stage], echo=lambda line: None)
    config = write_config(tmp_path, lake=str(root), models=one_model)
    mixed = inspected_checksums(config)
    root.rename(tmp_path / "mixed")
    run_stages(Context.create(demo_config({"root": str(root), "engine": "delta-rs"}, models=one_model), spark),
               echo=lambda line: None)
    assert inspected_checksums(config) == mixed
    assert set(mixed) == set(TABLES)
    filled = ("samples", "rejects", "videos", "frames", "token_lengths", "shards")
    assert all(int(mixed[name][0]) > 0 for name in filled)
