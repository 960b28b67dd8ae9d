"""The filters comparing samples (``jobs.cross_filters``, and the sample identity of
``jobs.tokens``) on a real SparkSession: exact duplicates, video-disjoint sources, mixtures."""
from __future__ import annotations

import hashlib

from jobs.cross_filters import select_across
from jobs.tokens import sample_identity
from tests.support.samples import video
from udfs.filters import FilterSettings, Mixture
from udfs.schemas import SAMPLES, to_spark_schema

ACROSS = "sample_id string, source string, videos array<string>, duplicate_of string, kept boolean, " \
         "reason string, flags array<string>"


def across(spark, rows: list[tuple], settings: FilterSettings) -> dict[str, tuple]:
    frame = spark.createDataFrame([(*row, True, None, []) for row in rows], ACROSS)
    return {r["sample_id"]: (r["kept"], r["reason"], r["flags"]) for r in select_across(frame, settings).collect()}


def test_sample_identity_finds_exact_duplicates(spark) -> None:
    original, copy, other_answer = video("a"), video("b"), video("c", answers=("Something else.",))
    for row in (copy, other_answer):  # the same media as ``original``
        row["media"] = original["media"]
    copy["conversations"] = original["conversations"]
    samples = spark.createDataFrame([{k: r[k] for k in SAMPLES.names} for r in (original, copy, other_answer)],
                                    to_spark_schema(SAMPLES))
    identity = {r["sample_id"]: r for r in sample_identity(samples).collect()}
    first, second = sorted([original["sample_id"], copy["sample_id"]])
    assert identity[second]["duplicate_of"] == first and identity[first]["duplicate_of"] is None
    assert identity[other_answer["sample_id"]]["duplicate_of"] is None
    assert identity[first]["videos"] == [original["media"][0]["uri"]]


def test_duplicates_drop_or_flag(spark) -> None:
    rows = [("s1", "qa", [], None), ("s2", "qa", [], "s1")]
    assert across(spark, rows, FilterSettings()) == {
        "s1": (True, None, []), "s2": (False, "exact duplicate of s1", [])}
    assert across(spark, rows, FilterSettings(duplicates="flag"))["s2"] == (True, None, ["exact duplicate of s1"])
    assert across(spark, rows, FilterSettings(duplicates="off"))["s2"] == (True, None, [])


def test_video_disjoint_keeps_a_shared_video_with_the_first_source(spark) -> None:
    rows = [
        ("q1", "qa", ["v1"], None), ("c1", "caption", ["v1"], None), ("c2", "caption", ["v2"], None),
        ("s1", "synthetic", ["v1"], None),  # not a listed source: unconstrained
        ("c3", "caption", ["v2", "v1"], None),
    ]
    result = across(spark, rows, FilterSettings(video_disjoint=("qa", "caption")))
    assert result["q1"] == result["c2"] == result["s1"] == (True, None, [])
    assert result["c1"] == result["c3"] == (False, "video-disjoint: v1 stays with source qa", [])
    reversed_priority = across(spark, rows, FilterSettings(video_disjoint=("caption", "qa")))
    assert reversed_priority["q1"] == (False, "video-disjoint: v1 stays with source caption", [])


def test_mixture_draws_quotas_deterministically(spark) -> None:
    rows = [(f"qa{i:02d}", "qa", [], None) for i in range(20)] + [
        (f"syn{i}", "synthetic", [], None) for i in range(3)] + [("cap0", "caption", [], None)]
    settings = FilterSettings(mixture=Mixture(seed=11, quotas={"qa": 5, "synthetic": 10}))
    result = across(spark, rows, settings)
    order = sorted((hashlib.sha256(f"11:{r[0]}".encode()).hexdigest(), r[0]) for r in rows if r[1] == "qa")
    assert {key for key, (kept, _, _) in result.items() if kept and key.startswith("qa")} == {k for _, k in order[:5]}
    assert result[order[5][1]] == (False, "mixture: not drawn (source qa keeps 5)", [])
    assert all(result[f"syn{i}"][0] for i in range(3))  # fewer than the quota: all of them
    assert result["cap0"] == (False, "mixture: source caption is not in the mix", [])
    assert across(spark, rows, settings) == result
    assert across(spark, rows, FilterSettings(mixture=Mixture(seed=12, quotas={"qa": 5}))) != result
