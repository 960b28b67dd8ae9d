"""The tokens and shards stages on a crafted lake, read back the way trainers read shards.

The lake holds real JPEG frames and Delta tables written through ``Lake.write``; the samples
are made so that every filter has something to drop, one has a system turn and one a MIMIC-IT
in-context example (written as earlier turns: ``shards.in_context: turns``). Only the tokens and
shards stages run (real SparkSession, real tokenizer), so the tests stay small: the module
fixture emits shards, changes one model's filters, and re-emits; the tests read the result and
what the re-emit did. Every format's shards are read with their consumer's rules
(tests/support/consumers.py, which cites the trainers' code).
"""
from __future__ import annotations

import base64
import glob
import hashlib
import io
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import webdataset as wds
from deltalake import DeltaTable
from PIL import Image

from framelake.config import ShardSettings, parse_config
from framelake.runtime import Context
from jobs import shards, tokens
from jobs.shards import assign_shards
from tests.support.consumers import (
    check_hf_parquet,
    check_llava,
    check_messages,
    check_minicpmv,
    check_otter,
    check_webdataset,
    image_opener,
)
from udfs.sample import MEDIA_TOKEN, make_media, make_sample, turn
from udfs.sampling import uniform_indices
from udfs.schemas import FRAMES, SAMPLES, VIDEOS, to_spark_schema

FRAME_SIZE = (64, 48)
FRAME_ROOT = "/mnt/train/lake"  # where a trainer mounts the lake: JSON frame paths start here
# name: (kind, frames); None frames: the extraction failed.
MEDIA = {"A": ("video", 12), "B": ("video", 4), "C": ("video", 4), "D": ("video", None), "I": ("image", 1)}
# key: (source, media, first user text, answer)
CORPUS = {
    "rolls": ("qa", ["A"], "What happens?", "A ball rolls."),
    "rolls-copy": ("qa", ["A"], "What happens?", "A ball rolls."),
    "sorry": ("qa", ["B"], "What colour is it?", "Sorry, I cannot see the video."),
    "empty": ("qa", ["B"], "How many bars?", " "),
    "pour": ("qa", ["C"], "What is poured?", "Water."),
    "describe-a": ("caption", ["A"], "Describe the clip.", "A ball rolls across a table."),
    "describe-b": ("caption", ["B"], "Describe the clip.", "Bars scroll."),
    "still": ("caption", ["I"], "Describe the image.", "A white square."),
    "wordy": ("synthetic", ["C"], " ".join(["word"] * 60), "Done."),
    "broken": ("synthetic", ["D"], "What happens?", "Nothing."),
    "pair": ("synthetic", ["B", "C"], "Compare the two clips.", "The second is shorter."),
    "story": ("synthetic", [], "Tell a story.", "Once upon a time."),
    "context": ("caption", ["I"], "What is in this one?", "The same square."),
}
SYSTEM = {"pour": "Answer in a few words."}  # key: the text of its system turn
# key: (example id, its media, its question, its answer): MIMIC-IT's in-context examples
IN_CONTEXT = {"context": ("DC_INS_1", ["I"], "What is in the picture?", "A white square.")}
FORMATS = ["minicpmv", "llava", "webdataset", "mimicit", "messages", "hf_parquet"]
MODELS = ("tight", "roomy")
ROOMY_FILTERS = {"media_layout": "one_video", "mixture": {"seed": 3, "counts": {"qa": 1, "caption": 5, "synthetic": 5}}}
ROOMY_CHANGE = {"max_turn0_words": 100}  # the config change of the re-emit: "wordy" becomes a roomy sample


def config_of(lake: Path, roomy_change: dict | None = None):
    return parse_config({
        "lake": str(lake),
        "sources": [{"name": name, "format": "videochat2", "annotations": f"{name}.json"}
                    for name in ("qa", "caption", "synthetic")],
        "models": [
            # 12 frames of 64x48 cost 12 * 98 + 11 tokens: over 700, so "rolls" gets fewer frames.
            {"name": "tight", "profile": "minicpm-llama3-v2_5", "max_tokens": 700, "max_frames": 12},
            {"name": "roomy", "profile": "minicpm-llama3-v2_5", "filters": {**ROOMY_FILTERS, **(roomy_change or {})}},
        ],
        "filters": {"max_turn0_words": 40, "video_disjoint": ["qa", "caption"]},
        "shards": {"formats": FORMATS, "samples_per_shard": 2, "frame_root": FRAME_ROOT, "length_order": "group",
                   "in_context": "turns"},
    })


def build_lake(spark, lake: Path) -> Context:
    """Samples, videos and frames tables of CORPUS, with real JPEG frames under the lake."""
    ctx = Context.create(config_of(lake), spark)
    refs = {name: make_media(kind, f"s3://media/{name}.{'jpg' if kind == 'image' else 'mp4'}")
            for name, (kind, _) in MEDIA.items()}
    def exchange(media, question, answer):
        return [turn("user", "\n".join([MEDIA_TOKEN] * len(media) + [question])), turn("assistant", answer)]

    def examples(key):
        return [{"example_id": example_id, "media": [refs[m] for m in media], "conversations": exchange(media, q, a)}
                for example_id, media, q, a in ([IN_CONTEXT[key]] if key in IN_CONTEXT else [])]

    samples = [
        make_sample(source=source, fmt="test", source_file=f"{source}.json", file_key=f"{source}.json",
                    record_index=i, record_key=key, media=[refs[m] for m in media], raw="{}",
                    conversations=([turn("system", SYSTEM[key])] if key in SYSTEM else [])
                    + exchange(media, question, answer), in_context=examples(key))
        for i, (key, (source, media, question, answer)) in enumerate(CORPUS.items())
    ]
    videos, frames = [], []
    for name, (kind, count) in MEDIA.items():
        ref = refs[name]
        videos.append({**dict.fromkeys(VIDEOS.names), "video_id": ref["media_id"], "uri": ref["uri"], "kind": kind,
                       "status": "ok" if count else "failed", "error": None if count else "moov atom not found",
                       "n_frames": count})
        for index in range(count or 0):
            uri = ctx.lake.uri("frames", ref["media_id"], f"{index:05d}.jpg")
            os.makedirs(os.path.dirname(uri), exist_ok=True)
            Image.new("RGB", FRAME_SIZE, (20 * index, 100, 200)).save(uri, "JPEG")
            data = Path(uri).read_bytes()
            frames.append({"video_id": ref["media_id"], "frame_index": index, "timestamp_s": float(index), "uri": uri,
                           "width": FRAME_SIZE[0], "height": FRAME_SIZE[1], "bytes": len(data),
                           "sha256": hashlib.sha256(data).hexdigest()})
    for name, schema, rows in (("samples", SAMPLES, samples), ("videos", VIDEOS, videos), ("frames", FRAMES, frames)):
        df = spark.createDataFrame([{k: r[k] for k in schema.names} for r in rows], to_spark_schema(schema))
        ctx.lake.write(name, df)
    return ctx


def file_states(ctx, model: str) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of each file of a model's shards: an atomic rewrite changes the inode."""
    files = [p for p in glob.glob(ctx.lake.uri("shards", model, "**"), recursive=True) if os.path.isfile(p)]
    return {path: (os.stat(path).st_ino, os.stat(path).st_mtime_ns) for path in files}


@pytest.fixture(scope="module")
def re_emit(spark, tmp_path_factory):
    """The crafted lake emitted, emitted again unchanged, then re-emitted after ROOMY_CHANGE:
    (ctx of the changed config, what each step did)."""
    lake = tmp_path_factory.mktemp("crafted") / "lake"
    first = build_lake(spark, lake)
    tokens.stage(first)
    shards.stage(first)
    steps = {"files": {model: file_states(first, model) for model in MODELS}, "unchanged": shards.stage(first)}
    ctx = Context.create(config_of(lake, ROOMY_CHANGE), spark)
    with pytest.raises(RuntimeError) as stale:
        shards.stage(ctx)  # token_lengths was made with roomy's old filters
    steps["stale"] = str(stale.value)
    tokens.stage(ctx)
    steps["changed"] = shards.stage(ctx)
    return ctx, steps


@pytest.fixture(scope="module")
def crafted(re_emit):
    """(ctx, token_lengths rows by (model, key), sample rows by key) of the final lake."""
    ctx, _ = re_emit
    samples = DeltaTable(ctx.lake.table_uri("samples")).to_pyarrow_table().to_pylist()
    key_of = {s["sample_id"]: list(CORPUS)[s["record_index"]] for s in samples}
    lengths = DeltaTable(ctx.lake.table_uri("token_lengths")).to_pyarrow_table().to_pylist()
    return ctx, {(r["model"], key_of[r["sample_id"]]): r for r in lengths}, {key_of[s["sample_id"]]: s for s in samples}


def shard_rows(ctx, model: str, fmt: str) -> list[dict]:
    rows = DeltaTable(ctx.lake.table_uri("shards")).to_pyarrow_table().to_pylist()
    return sorted((r for r in rows if (r["model"], r["format"]) == (model, fmt)), key=lambda r: r["shard_path"])


def kept_keys(lengths: dict, model: str) -> set[str]:
    return {key for (m, key), row in lengths.items() if m == model and row["kept"]}


# --- filtering ------------------------------------------------------------------------------


def test_counts_line_up_per_model(crafted):
    ctx, lengths, samples = crafted
    for model in ("tight", "roomy"):
        rows = [row for (m, _), row in lengths.items() if m == model]
        kept = [row for row in rows if row["kept"]]
        dropped = [row for row in rows if not row["kept"]]
        assert all(row["reason"] for row in dropped) and not any(row["reason"] for row in kept)
        assert len(kept) + len(dropped) == len(rows) == len(samples)
        for fmt in ctx.config.shards.formats:
            manifest = json.loads(Path(ctx.lake.uri("shards", model, fmt, "manifest.json")).read_text())
            assert manifest["samples"] == len(kept) == sum(r["samples"] for r in shard_rows(ctx, model, fmt)), fmt
            assert manifest["token_sum"] == sum(row["total_tokens"] for row in kept)


def test_every_filter_leaves_its_reason(crafted):
    _, lengths, samples = crafted
    reasons = {key: lengths["tight", key]["reason"] for key in CORPUS}
    first, second = sorted(["rolls", "rolls-copy"], key=lambda k: samples[k]["sample_id"])
    assert reasons[first] is None and reasons[second] == f"exact duplicate of {samples[first]['sample_id']}"
    assert reasons["sorry"] == "refusal-style answer: 'Sorry, I cannot see the video.'"
    assert reasons["empty"] == "empty answer"
    assert reasons["describe-a"] == "video-disjoint: s3://media/A.mp4 stays with source qa"
    assert reasons["describe-b"] is None  # B's qa samples were dropped, so caption may use it
    assert reasons["wordy"] == "turn 0 has 60 words > max_turn0_words 40"
    assert reasons["broken"] == "frames missing for media 0 (failed)"
    assert reasons["pair"] == "not expressible as llava: LLaVA records hold one video; sample has several"
    assert reasons["story"].startswith("not expressible as minicpmv: MiniCPM-V records need at least one image")
    assert reasons["context"] is None  # its example goes into earlier turns, with its own image
    assert kept_keys(lengths, "tight") == {first, "pour", "describe-b", "still", "context"}

    roomy = {key: lengths["roomy", key]["reason"] for key in CORPUS}
    for key in ("still", "pair", "story", "context"):
        assert roomy[key].startswith("media layout: "), key
    assert roomy["wordy"] is None  # roomy's own max_turn0_words (100) replaces the common 40
    # The mixture keeps one qa sample of the two left, the first in the seeded hash order.
    drawn = min([first, "pour"], key=lambda k: hashlib.sha256(f"3:{samples[k]['sample_id']}".encode()).hexdigest())
    undrawn = ({first, "pour"} - {drawn}).pop()
    assert roomy[undrawn] == "mixture: not drawn (source qa keeps 1)"
    assert kept_keys(lengths, "roomy") == {drawn, "describe-b", "wordy"}


def test_a_sample_over_budget_because_of_frames_is_trimmed(crafted):
    ctx, lengths, samples = crafted
    rolls = min(["rolls", "rolls-copy"], key=lambda k: samples[k]["sample_id"])
    tight, roomy = lengths["tight", rolls], lengths["roomy", rolls]
    assert tight["trimmed"] and tight["kept"] and tight["total_tokens"] <= 700
    assert tight["n_frames"] == tight["frame_budget"] < 12
    assert not roomy["trimmed"] and roomy["n_frames"] == 12
    [record] = [r for path in sorted(glob.glob(ctx.lake.uri("shards", "tight", "minicpmv", "shard-*.json")))
                for r in json.load(open(path, encoding="utf-8")) if r["id"] == samples[rolls]["sample_id"]]
    indices = [int(Path(p).stem) for p in record["image"].values()]
    assert indices == uniform_indices(12, tight["n_frames"])  # the frames counted are the frames emitted


# --- shards, read as trainers read them -----------------------------------------------------


def json_records(ctx, model: str, fmt: str) -> list[dict]:
    return [r for row in shard_rows(ctx, model, fmt) for r in json.load(open(row["shard_path"], encoding="utf-8"))]


def lake_images(ctx):
    """Opens a shard's frame path as a trainer that mounts the lake at FRAME_ROOT does."""
    return image_opener(ctx.lake.root, mounted_at=FRAME_ROOT)


def test_webdataset_shards_iterate_with_webdataset(crafted):
    ctx, lengths, samples = crafted
    key_of = {s["sample_id"]: key for key, s in samples.items()}
    for model in ("tight", "roomy"):
        seen = []
        for row in shard_rows(ctx, model, "webdataset"):
            items = list(wds.WebDataset(row["shard_path"], shardshuffle=False).decode("pil"))
            assert len(items) == row["samples"]
            check_webdataset(items)
            for item in items:
                meta, key = item["json"], key_of[item["__key__"]]
                assert meta["conversations"] == samples[key]["conversations"]
                carried = [IN_CONTEXT[key][0]] if key in IN_CONTEXT else []
                assert [example["example_id"] for example in meta["in_context"]] == carried
                fields = [f["field"] for media in meta["media"] for f in media["frames"]]
                assert len(fields) == lengths[model, key]["n_frames"]
                for name in fields:
                    assert item[name].size == FRAME_SIZE
                seen.append(item["__key__"])
        assert sorted(seen) == sorted(samples[key]["sample_id"] for key in kept_keys(lengths, model))


def test_minicpmv_json_loads_as_minicpmv_reads_it(crafted):
    ctx, lengths, samples = crafted
    for model in ("tight", "roomy"):
        records = json_records(ctx, model, "minicpmv")
        assert len(records) == len(kept_keys(lengths, model))
        for record in records:
            check_minicpmv(record, lake_images(ctx))
            assert all(path.startswith(FRAME_ROOT + "/frames/") for path in record["image"].values())
    [context] = [r for r in json_records(ctx, "tight", "minicpmv") if r["id"] == samples["context"]["sample_id"]]
    assert [t["content"] for t in context["conversations"]] == [
        "<image_00>\nWhat is in the picture?", "A white square.", "<image_01>\nWhat is in this one?",
        "The same square."]


def test_llava_json_loads_as_llavas_train_py_reads_it(crafted):
    ctx, lengths, samples = crafted
    for model in ("tight", "roomy"):
        records = json_records(ctx, model, "llava")
        assert len(records) == len(kept_keys(lengths, model))
        for record in records:
            check_llava(record, lake_images(ctx))
    [pour] = [r for r in json_records(ctx, "tight", "llava") if r["id"] == samples["pour"]["sample_id"]]
    assert pour["conversations"][0]["value"] == "<video>\nAnswer in a few words.\nWhat is poured?"


def test_messages_and_parquet_load_as_llama_factory_and_datasets_read_them(crafted):
    ctx, lengths, samples = crafted
    for model in ("tight", "roomy"):
        records = json_records(ctx, model, "messages")
        assert len(records) == len(kept_keys(lengths, model))
        for record in records:
            check_messages(record, lake_images(ctx))
        rows = [r for row in shard_rows(ctx, model, "hf_parquet") for r in check_hf_parquet(row["shard_path"],
                                                                                         lake_images(ctx))]
        assert sorted(rows, key=lambda r: r["id"]) == sorted(records, key=lambda r: r["id"])
    [pour] = [r for r in json_records(ctx, "tight", "messages") if r["id"] == samples["pour"]["sample_id"]]
    assert pour["messages"][0] == {"role": "system", "content": "Answer in a few words."}


def test_mimicit_triples_load_as_otter_loads_them(crafted):
    ctx, lengths, samples = crafted
    rows = shard_rows(ctx, "tight", "mimicit")
    stems = sorted(r["shard_path"][:-len("_instructions.json")] for r in rows if r["samples"])
    assert [os.path.basename(stem) for stem in stems] == ["shard-00000", "shard-00001", "shard-00002"]
    assert sorted(r["shard_path"] for r in rows) == sorted(
        f"{stem}{suffix}" for stem in stems for suffix in ("_instructions.json", "_train.json", ".parquet"))
    queries = []
    for stem in stems:
        instructions = json.load(open(f"{stem}_instructions.json", encoding="utf-8"))
        train = json.load(open(f"{stem}_train.json", encoding="utf-8"))
        images = pd.read_parquet(f"{stem}.parquet")
        check_otter(instructions, train, images)
        for query_id in train:
            assert query_id.startswith("DC_INS_")
            for image_id in instructions["data"][query_id]["image_ids"]:
                jpeg = base64.urlsafe_b64decode(images.loc[image_id]["base64"])
                assert Image.open(io.BytesIO(jpeg)).size == FRAME_SIZE
            queries.append(query_id)
    kept = kept_keys(lengths, "tight")
    assert sorted(queries) == sorted(f"DC_INS_{samples[key]['sample_id']}" for key in kept)


def test_shards_are_grouped_by_token_length(crafted):
    ctx, lengths, _ = crafted
    total = {row["sample_id"]: row["total_tokens"] for (model, _), row in lengths.items() if model == "tight"}
    per_shard = [[total[r["id"]] for r in json.load(open(row["shard_path"], encoding="utf-8"))]
                 for row in shard_rows(ctx, "tight", "llava")]
    plan = reference_plan([1] * sum(map(len, per_shard)), 2)
    assert [len(shard) for shard in per_shard] == [plan.count(index) for index in range(len(per_shard))]
    kept_tokens = sorted(row["total_tokens"] for (model, _), row in lengths.items() if model == "tight" and row["kept"])
    assert [t for shard in per_shard for t in shard] == kept_tokens


# --- re-emitting ------------------------------------------------------------------------------


def test_re_emit_after_a_config_change_rewrites_only_that_model(re_emit, crafted):
    ctx, steps = re_emit
    _, lengths, _ = crafted
    assert steps["unchanged"].details["rewritten"] == [] and steps["unchanged"].counts["models_unchanged"] == 2
    assert "token_lengths of model 'roomy' was not made from the current samples and settings" in steps["stale"]
    assert steps["changed"].details["rewritten"] == ["roomy"]
    assert file_states(ctx, "tight") == steps["files"]["tight"]  # not one tight file touched
    after = file_states(ctx, "roomy")
    assert after and all(after.get(path, (None,))[0] != inode for path, (inode, _) in steps["files"]["roomy"].items())
    table = DeltaTable(ctx.lake.table_uri("shards")).to_pyarrow_table().to_pylist()
    for model in MODELS:
        for fmt in ctx.config.shards.formats:
            rows = [r for r in table if (r["model"], r["format"]) == (model, fmt)]
            assert sum(r["samples"] for r in rows) == len(kept_keys(lengths, model)), (model, fmt)


# --- shard assignment -----------------------------------------------------------------------


def reference_plan(weights: list[int], target: int) -> list[int]:
    """The midpoint rule, in plain Python, for items in shard order."""
    total, before, plan = sum(weights), 0, []
    count = max(1, -(-total // target))
    for weight in weights:
        plan.append(min(count - 1, count * (2 * before + weight) // (2 * total)))
        before += weight
    used = sorted(set(plan))
    return [used.index(index) for index in plan]


def assigned(spark, items: list[tuple[str, int, int]], **settings) -> dict[str, int]:
    kept = spark.createDataFrame(items, "sample_id string, total_tokens int, payload_bytes long")
    return {r["sample_id"]: r["shard_index"] for r in assign_shards(kept, ShardSettings(**settings)).collect()}


def test_assignment_by_samples_is_balanced_and_contiguous(spark):
    ids = sorted(hashlib.sha256(str(i).encode()).hexdigest()[:32] for i in range(300))  # ids in many buckets
    plan = assigned(spark, [(i, 10, 1) for i in ids], samples_per_shard=64)
    assert [plan[i] for i in ids] == reference_plan([1] * 300, 64)
    sizes = [list(plan.values()).count(index) for index in range(5)]
    assert sizes == [60] * 5 and max(plan.values()) == 4


def test_assignment_by_bytes_numbers_shards_without_gaps(spark):
    items = [(f"id{i:03d}", 10, 10 + (7 * i) % 23) for i in range(200)]
    items[50] = ("id050", 10, 5000)  # heavier than a shard: the shards it spans stay empty
    plan = assigned(spark, items, balance="bytes", bytes_per_shard=400)
    assert [plan[i] for i, _, _ in items] == reference_plan([size for _, _, size in items], 400)
    assert sorted(set(plan.values())) == list(range(max(plan.values()) + 1))


def test_assignment_grouped_by_length_orders_by_tokens(spark):
    items = [(f"id{i:02d}", (37 * i) % 50, 1) for i in range(50)]
    plan = assigned(spark, items, samples_per_shard=10, length_order="group")
    in_order = sorted(items, key=lambda item: (item[1], item[0]))
    assert [plan[i] for i, _, _ in in_order] == reference_plan([1] * 50, 10)
