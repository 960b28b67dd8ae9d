"""Hostile annotations and media through the normalize and frames stages: every case ends in
a ``rejects`` row or a ``failed`` videos row with a readable reason, every good record next
to them is kept, and records in = samples + rejects per source."""
from __future__ import annotations

import pytest

from framelake.runtime import Context
from jobs.pipeline import run_stages
from tests.support.config import demo_config
from tests.support.hostile import build_corpus


@pytest.fixture(scope="module")
def hostile_run(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    corpus = build_corpus(root / "corpus")
    ctx = Context.create(demo_config(str(root / "lake"), sources=corpus.sources), spark)
    results = run_stages(ctx, ["normalize", "frames"], echo=lambda line: None)
    tables = {name: ctx.lake.read_arrow(name).to_pylist() for name in ("samples", "rejects", "videos")}
    print(f"\nhostile corpus: {len(corpus.cases)} cases")
    return corpus, results, tables


def _row(rows, case_file: str, index: int):
    found = [r for r in rows if r["source_file"].endswith("/annotations/" + case_file) and r["record_index"] == index]
    assert len(found) <= 1
    return found[0] if found else None


def test_the_corpus_is_big_enough(hostile_run):
    corpus, _, _ = hostile_run
    assert len(corpus.cases) >= 30
    assert len({case.name for case in corpus.cases}) == len(corpus.cases)


def test_every_case_ends_where_expected_with_its_reason(hostile_run):
    corpus, _, tables = hostile_run
    videos = {v["video_id"]: v for v in tables["videos"]}
    wrong = []
    for case in corpus.cases:
        sample = _row(tables["samples"], case.file, case.index)
        reject = _row(tables["rejects"], case.file, case.index)
        if case.ends_in == "reject":
            ok = sample is None and reject is not None and case.reason in reject["reason"]
            got = reject and reject["reason"]
        else:
            ok = reject is None and sample is not None
            got = sample and sample["sample_id"]
            if ok and case.ends_in == "failed":
                video = videos[sample["media"][0]["media_id"]]
                ok = video["status"] == "failed" and case.reason in video["error"] and video["n_frames"] == 0
                got = (video["status"], video["error"])
        if not ok:
            wrong.append(f"{case.name}: expected {case.ends_in} {case.reason!r}, got {str(got)[:300]}")
    assert not wrong, "\n".join(wrong)


def test_every_good_record_next_to_them_is_kept(hostile_run):
    corpus, _, tables = hostile_run
    videos = {v["video_id"]: v for v in tables["videos"]}
    for source, records in corpus.good.items():
        for file, index in records:
            sample = _row(tables["samples"], file, index)
            assert sample is not None, (source, file, index)
            for media in sample["media"]:
                assert videos[media["media_id"]]["status"] == "ok", videos[media["media_id"]]["error"]
                assert videos[media["media_id"]]["n_frames"] > 0


def test_duplicate_ids_get_their_own_sample_id(hostile_run):
    corpus, _, tables = hostile_run
    ids = [s["sample_id"] for s in tables["samples"]]
    assert len(ids) == len(set(ids))
    duplicate = next(c for c in corpus.cases if c.name == "duplicate id")
    first = _row(tables["samples"], duplicate.file, 0)
    assert _row(tables["samples"], duplicate.file, duplicate.index)["sample_id"] != first["sample_id"]


def test_records_in_equal_samples_plus_rejects_per_source(hostile_run):
    corpus, results, tables = hostile_run
    normalize = next(r for r in results if r.stage == "normalize")
    for source, written in corpus.records.items():
        samples = sum(1 for s in tables["samples"] if s["source"] == source)
        rejects = sum(1 for r in tables["rejects"] if r["source"] == source)
        assert samples + rejects == written, source
        assert normalize.details["sources"][source]["in"] == written, source


def test_rejects_keep_bounded_raw_text(hostile_run):
    _, _, tables = hostile_run
    assert all(len(r["raw"].encode()) <= 64 * 1024 and r["reason"] for r in tables["rejects"])
