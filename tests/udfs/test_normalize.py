"""The normalize loop (``udfs.normalize``): planning a run's units against the files of the
last one, unreadable files and adapter errors as rejects, a reject's raw text bounded."""

from __future__ import annotations

import json

from framelake.storage import ObjectInfo
from tests.support.adapters import context, normalize_files
from tests.support.paths import FORMATS
from udfs.adapters import NormalizeContext, SourceSpec, get_adapter
from udfs.normalize import normalize_unit, plan_run


def test_ten_megabyte_answer_and_reject_raw_truncated_to_64_kib(tmp_path):
    answer = "Le café est très chaud. " * 420_000  # ~10 MB of UTF-8
    path = tmp_path / "big.json"
    path.write_text(
        json.dumps(
            [
                {"video": "a.mp4", "QA": [{"i": "", "q": "Q", "a": answer}]},
                {"video": "/abs/b.mp4", "QA": [{"i": "", "q": "Q", "a": "é" * 5_000_000}]},
                {"video": "c.mp4", "QA": [{"i": "", "q": "Q", "a": "short"}]},
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    run = normalize_files([path], context(tmp_path, "videochat2"))
    assert run.sample("big.json", 0)["conversations"][1]["content"] == answer
    assert run.sample("big.json", 2)["conversations"][1]["content"] == "short"
    (reject,) = run.rejects
    assert reject["reason"] == "absolute media path outside media_root: '/abs/b.mp4'"
    raw = reject["raw"].encode("utf-8")
    assert 64 * 1024 - 1 <= len(raw) <= 64 * 1024
    assert reject["raw"].startswith('{"video": "/abs/b.mp4"')


def test_plan_run_keeps_unchanged_units_and_replaces_the_others():
    qa = SourceSpec("qa", "videochat2", "s3://b/qa", "s3://media")
    mimic = SourceSpec("mimic", "mimicit", "s3://b/mimic", "s3://media")
    listings = {
        "qa": [ObjectInfo("s3://b/qa/a.json", 10, "e1", 0.0), ObjectInfo("s3://b/qa/b.json", 20, "e2", 0.0)],
        "mimic": [ObjectInfo("s3://b/mimic/DC/DC_instructions.json", 30, "e3", 0.0),
                  ObjectInfo("s3://b/mimic/DC/DC.json", 40, "e4", 0.0)],
    }
    first = plan_run([qa, mimic], listings, None)
    assert first.first and first.kept == 0 and len(first.files) == 4
    assert [(u.source, u.files, u.size) for u in first.units] == [
        ("qa", ("s3://b/qa/a.json",), 10),
        ("qa", ("s3://b/qa/b.json",), 20),
        ("mimic", ("s3://b/mimic/DC/DC_instructions.json", "s3://b/mimic/DC/DC.json"), 70),
    ]
    again = plan_run([qa, mimic], listings, first.files)
    assert (again.units, again.kept, again.replaced, again.replaced_sources, again.first) == ([], 3, {}, [], False)

    changed = {
        "qa": [listings["qa"][0], ObjectInfo("s3://b/qa/b.json", 21, "e5", 0.0),
               ObjectInfo("s3://b/qa/c.json", 5, "e6", 0.0)],
        "mimic": [listings["mimic"][0], ObjectInfo("s3://b/mimic/DC/DC.json", 40, "e7", 0.0)],  # new images
    }
    plan = plan_run([qa, mimic], changed, first.files)
    assert [u.files[0] for u in plan.units] == ["s3://b/qa/b.json", "s3://b/qa/c.json", "s3://b/mimic/DC/DC_instructions.json"]
    assert plan.kept == 1
    assert plan.replaced == {"qa": ["s3://b/qa/b.json", "s3://b/qa/c.json"]}
    assert plan.replaced_sources == ["mimic"]  # none of its units is kept: all its rows go

    moved = SourceSpec("qa", "videochat2", "s3://b/qa", "s3://elsewhere")
    plan = plan_run([moved], {"qa": listings["qa"]}, first.files)  # new settings; mimic removed
    assert [u.files[0] for u in plan.units] == ["s3://b/qa/a.json", "s3://b/qa/b.json"]
    assert (plan.kept, plan.replaced, plan.replaced_sources) == (0, {}, ["mimic", "qa"])
    removed = plan_run([qa], {"qa": listings["qa"][:1]}, first.files)
    assert (removed.units, removed.kept, removed.replaced) == ([], 1, {"qa": ["s3://b/qa/b.json"]})


def test_unreadable_file_is_a_reject(tmp_path):
    adapter = get_adapter("llava")
    missing = str(tmp_path / "missing.json")
    rows = list(normalize_unit(adapter, [missing], context(tmp_path, "llava")))
    assert len(rows) == 1
    kind, row = rows[0]
    assert kind == "reject"
    assert row["reason"].startswith("unreadable: FileNotFoundError:")
    assert (row["source_file"], row["record_index"], row["raw"]) == (missing, None, "")


def test_unexpected_adapter_error_is_an_internal_reject(tmp_path):
    ctx = context(tmp_path, "m3it")

    def put_inline_into_missing_folder(data: bytes, ext: str) -> str:
        target = tmp_path / "no-such-folder" / f"image.{ext}"
        target.write_bytes(data)
        return str(target)

    broken = NormalizeContext(spec=ctx.spec, open_binary=ctx.open_binary, put_inline=put_inline_into_missing_folder)
    run = normalize_files([FORMATS / "m3it" / "m3it_vqa.jsonl"], broken)
    reasons = run.reasons("m3it_vqa.jsonl")
    assert reasons[0].startswith("internal: FileNotFoundError:")
    assert reasons[1].startswith("internal: FileNotFoundError:")
    assert run.sample("m3it_vqa.jsonl", 2)["media_type"] == "text"
