"""The normalize stage as a Spark job: big files read in splits, incremental reruns, ``where:``,
and S3 listings with ranged reads. Tables are read back with delta-rs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
from deltalake import DeltaTable

from framelake.config import parse_config
from framelake.runtime import Context
from framelake.storage import Storage, StorageOptions
from jobs import normalize

MODELS = [{"name": "minicpm-llama3-v2_5", "profile": "minicpm-llama3-v2_5"}]
# VideoChat2-IT kept only CLEVRER questions about colour, material or shape.
COLOUR_QUESTIONS = "exists(conversations, t -> t.role = 'user' AND t.content rlike '(?i)colou?r|material|shape')"


def run_normalize(spark, lake: Path, sources: list[dict], **normalize_settings):
    config = parse_config({"lake": str(lake), "sources": sources, "models": MODELS,
                           "normalize": normalize_settings})
    ctx = Context.create(config, spark)
    return ctx, normalize.stage(ctx)


def rows(lake: Path, table: str) -> list[dict]:
    return sorted(DeltaTable(str(lake / "tables" / table)).to_pyarrow_table().to_pylist(),
                  key=lambda r: json.dumps(r, sort_keys=True))


def versions(lake: Path) -> dict[str, int]:
    return {name: DeltaTable(str(lake / "tables" / name)).version() for name in ("samples", "rejects", "source_files")}


def videochat2_records(n: int, tag: str = "") -> list:
    """VideoChat2-IT records, every 7th about shape, every 11th broken (a number as answer)."""
    records = []
    for i in range(n):
        question = f"What shape is object {i}?" if i % 7 == 0 else f"What happens at {i} s? 🎬 {tag}"
        answer = 42 if i % 11 == 5 else f"Réponse {i}: " + "é" * (i % 13)
        records.append({"video": f"clevrer/video_{i:05d}.mp4", "QA": [{"i": "Watch.", "q": question, "a": answer}],
                        **({"start": 1.0, "end": 3.5} if i % 3 == 0 else {})})
    return records


def write_array(path: Path, records: list, *, extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + extra + "\n]\n",
                    encoding="utf-8")
    return path


def llava_lines(n: int) -> str:
    """LLaVA JSON lines; ids repeat (every record shares its id with the one 9 later), blank
    and broken lines in between."""
    lines = []
    for i in range(n):
        record = {"id": f"img{i % 9}", "image": f"coco/{i:06d}.jpg",
                  "conversations": [{"from": "human", "value": f"<image>\nQ{i} 日本語"},
                                    {"from": "gpt", "value": f"A{i}"}]}
        lines.append(json.dumps(record, ensure_ascii=False))
        if i % 10 == 4:
            lines += ["", '{"id": "broken", "image": "x.jpg" "conversations": []}']
    return "\n".join(lines) + "\n"


def test_big_files_read_in_splits_give_the_rows_of_whole_files(spark, tmp_path):
    annotations = tmp_path / "annotations"
    write_array(annotations / "clevrer" / "train.json", videochat2_records(60),
                extra=',\n{"video": "cut.mp4", "QA": [{"q": "missing comma" "a": "x"}]},\n' + json.dumps(
                    {"video": "last.mp4", "QA": [{"i": "", "q": "What colour?", "a": "Blue."}]}))
    (annotations / "llava").mkdir()
    (annotations / "llava" / "chat.jsonl").write_text(llava_lines(40), encoding="utf-8")
    sources = [
        {"name": "clevrer", "format": "videochat2", "annotations": str(annotations / "clevrer"),
         "media_root": "/data/media", "media_type": "video", "where": COLOUR_QUESTIONS},
        {"name": "llava", "format": "llava", "annotations": str(annotations / "llava" / "chat.jsonl"),
         "media_root": "/data/media"},
    ]
    _, split = run_normalize(spark, tmp_path / "split", sources, split_bytes=1000)
    _, whole = run_normalize(spark, tmp_path / "whole", sources)

    assert whole.counts["units"] == 2 and split.counts["units"] > 10
    assert split.counts == {**whole.counts, "units": split.counts["units"]}
    for table in ("samples", "rejects"):
        assert rows(tmp_path / "split", table) == rows(tmp_path / "whole", table), table
    samples = rows(tmp_path / "split", "samples")
    ids = [s["sample_id"] for s in samples]
    assert len(ids) == len(set(ids))
    indexes = {}
    for row in samples + rows(tmp_path / "split", "rejects"):
        indexes.setdefault(row["source_file"], []).append(row["record_index"])
    # every record once, at its index in its file: 62 array elements, 40 + 4 non-blank lines
    assert {Path(f).name: sorted(i) for f, i in indexes.items()} == {
        "train.json": list(range(62)), "chat.jsonl": list(range(44))}
    rejects = {(Path(r["source_file"]).name, r["record_index"]): r["reason"]
               for r in rows(tmp_path / "split", "rejects")}
    assert rejects[("train.json", 5)] == "QA[0].a must be a string, got a number"
    assert rejects[("train.json", 60)].startswith("invalid JSON: Expecting ',' delimiter")
    assert rejects[("train.json", 1)] == f"excluded by where: {COLOUR_QUESTIONS}"
    assert ("train.json", 61) not in rejects and ("train.json", 14) not in rejects  # colour, shape
    assert whole.details["sources"] == split.details["sources"] == {
        "clevrer": {"in": 62, "samples": 9, "rejects": 53}, "llava": {"in": 44, "samples": 40, "rejects": 4}}


def test_rerun_normalizes_only_new_changed_and_removed_files(spark, tmp_path):
    qa = tmp_path / "annotations" / "qa"
    for name in ("a.json", "b.json", "c.json"):
        write_array(qa / name, videochat2_records(12, tag=name))
    captions = tmp_path / "annotations" / "captions.jsonl"
    captions.write_text(llava_lines(12), encoding="utf-8")
    sources = [
        {"name": "qa", "format": "videochat2", "annotations": str(qa), "media_root": "/data/qa"},
        {"name": "captions", "format": "llava", "annotations": str(captions), "media_root": "/data/coco"},
    ]
    lake = tmp_path / "lake"
    _, first = run_normalize(spark, lake, sources)
    assert (first.counts["units"], first.counts["kept"]) == (4, 0)
    before = versions(lake)
    samples = rows(lake, "samples")

    _, again = run_normalize(spark, lake, sources)
    assert (again.counts["units"], again.counts["kept"], again.counts["in"]) == (0, 4, 0)
    assert versions(lake) == before and rows(lake, "samples") == samples
    assert again.details == first.details

    files_before = set(DeltaTable(str(lake / "tables" / "samples")).file_uris())
    write_array(qa / "b.json", videochat2_records(5, tag="b, second edition"))
    write_array(qa / "d.json", videochat2_records(3, tag="new file"))
    os.remove(qa / "c.json")
    sources[1]["media_root"] = "/mnt/coco"  # new settings: the source is normalized again
    _, third = run_normalize(spark, lake, sources)
    assert (third.counts["units"], third.counts["kept"]) == (3, 1)
    assert third.counts["in"] == 5 + 3 + 13
    # the rows of a.json, the only unit kept, were not rewritten
    kept_files = {uri for uri in files_before if source_files_in(uri) == {str(qa / "a.json")}}
    assert kept_files and kept_files <= set(DeltaTable(str(lake / "tables" / "samples")).file_uris())

    _, fresh = run_normalize(spark, tmp_path / "fresh", sources)
    for table in ("samples", "rejects", "source_files"):
        assert rows(lake, table) == rows(tmp_path / "fresh", table), table
    assert third.details == fresh.details
    latest = rows(lake, "samples")
    assert {Path(r["source_file"]).name for r in latest} == {"a.json", "b.json", "d.json", "captions.jsonl"}
    assert {r["media"][0]["uri"].rsplit("/", 2)[0] for r in latest if r["source"] == "captions"} == {"/mnt/coco"}


def source_files_in(parquet_file: str) -> set[str]:
    """The source files whose rows a Parquet file of a table holds."""
    return set(pq.read_table(parquet_file, columns=["source_file"]).column("source_file").to_pylist())


def test_an_unreadable_file_is_rejected_and_tried_again(spark, tmp_path):
    folder = tmp_path / "annotations"
    write_array(folder / "good.json", videochat2_records(4))
    (folder / "later.json").symlink_to(tmp_path / "not-yet-there.json")
    sources = [{"name": "qa", "format": "videochat2", "annotations": str(folder), "media_root": "/data"}]
    lake = tmp_path / "lake"
    _, first = run_normalize(spark, lake, sources)
    (reject,) = [r for r in rows(lake, "rejects") if Path(r["source_file"]).name == "later.json"]
    assert reject["reason"].startswith("unreadable: FileNotFoundError") and reject["record_index"] is None
    assert first.details["sources"]["qa"] == {"in": 5, "samples": 4, "rejects": 1}

    _, second = run_normalize(spark, lake, sources)  # nothing changed
    assert (second.counts["units"], second.counts["kept"]) == (1, 1)
    assert second.details == first.details


def test_s3_listing_has_sizes_and_versions_and_reads_from_an_offset(s3_client, s3_storage_section):
    storage = Storage(StorageOptions.from_config(s3_storage_section))
    client = s3_client
    client.put_object(Bucket="framelake-test", Key="normalize/a.jsonl", Body=b'{"a": 1}\n{"b": 2}\n')
    (info,) = storage.list_info("s3://framelake-test/normalize/")
    assert (info.uri, info.size) == ("s3://framelake-test/normalize/a.jsonl", 18)
    with storage.open_read(info.uri, 9) as stream:
        assert stream.read() == b'{"b": 2}\n'
    client.put_object(Bucket="framelake-test", Key="normalize/a.jsonl", Body=b'{"a": 2}\n{"b": 2}\n')
    (changed,) = storage.list_info("s3://framelake-test/normalize/")
    assert changed.size == info.size and changed.version != info.version
