"""Filters: the per-sample ones in ``udfs.filters`` (plain Python, the real Llama 3 tokenizer)
and the ones comparing samples in ``jobs.tokens`` (a real SparkSession)."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pytest

from framelake.config import ConfigError, parse_config
from jobs.tokens import sample_identity, select_across
from udfs.filters import FilterError, FilterSettings, Mixture, assess, mixture_quotas
from udfs.sample import MEDIA_TOKEN, make_media, make_sample, turn
from udfs.sampling import uniform_indices
from udfs.schemas import SAMPLES, TOKEN_LENGTHS, to_spark_schema
from udfs.selection import select_frames
from udfs.token_lengths import ModelProfile, load_profile
from udfs.tokenizers import load_counter

PROFILE_DIR = Path(__file__).resolve().parent.parent / "conf" / "models"
SOURCES = ["qa", "caption", "synthetic"]
FRAME_BYTES = 1000


def small_minicpm(**changes) -> ModelProfile:
    """MiniCPM-Llama3-V 2.5 (98 tokens per 64x48 frame, 1 between frames) with a small budget."""
    base = load_profile("minicpm-llama3-v2_5", [PROFILE_DIR])
    return ModelProfile.from_dict({**base, "max_tokens": 700, "max_frames": 16, **changes})


@pytest.fixture(scope="module")
def llama3():
    return load_counter("llama3")


def frames(video: str, n: int, size=(64, 48)) -> list[dict]:
    return [{"frame_index": i, "timestamp_s": float(i), "uri": f"/lake/frames/{video}/{i:05d}.jpg",
             "width": size[0], "height": size[1], "bytes": FRAME_BYTES} for i in range(n)]


def sample(key: str, media: list[tuple[str, int]], first_user: str, answers=("A ball rolls.",), status="ok",
           source="qa") -> dict:
    """A canonical sample plus ``media_frames``: ``media`` is (kind, frame count) per item."""
    refs = [make_media(kind, f"s3://media/{key}-{i}.{'jpg' if kind == 'image' else 'mp4'}")
            for i, (kind, _) in enumerate(media)]
    conversations = [turn("user", first_user)]
    for i, answer in enumerate(answers):
        conversations += ([turn("user", f"And then {i}?")] if i else []) + [turn("assistant", answer)]
    row = make_sample(source=source, fmt="test", source_file="f.json", file_key="f.json", record_index=0,
                      record_key=key, media=refs, conversations=conversations, raw="{}")
    row["media_frames"] = [
        {"position": i, "kind": kind, "status": status, "frames": frames(ref["media_id"], n) if status == "ok" else None}
        for i, ((kind, n), ref) in enumerate(zip(media, refs))
    ]
    return row


def video(key: str, n_frames: int = 4, question: str = "What happens?", **kwargs) -> dict:
    return sample(key, [("video", n_frames)], f"{MEDIA_TOKEN}\n{question}", **kwargs)


def assess_one(row: dict, llama3, settings=FilterSettings(), formats=(), profile=None) -> dict:
    [result] = assess(profile or small_minicpm(), llama3, settings, [row], formats)
    return result


# --- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"media_layout": "two_videos"}, "media_layout: must be one of any, has_media, one_video"),
        ({"max_turn0_words": 0}, "max_turn0_words: must be a positive integer or null"),
        ({"min_frames": True}, "min_frames: must be a positive integer"),
        ({"fit_frames": "yes"}, "fit_frames: must be true or false"),
        ({"refusals": "drop_all"}, "refusals: must be one of drop, flag, off"),
        ({"refusal_patterns": ["ok", "(unclosed"]}, "refusal_patterns[1]: not a regular expression"),
        ({"video_disjoint": ["qa"]}, "video_disjoint: must be true, false or a list of two or more sources"),
        ({"video_disjoint": ["qa", "webvid"]}, "video_disjoint[1]: unknown source 'webvid'"),
        ({"mixture": {"counts": {"qa": 1}, "weights": {"qa": 1}}}, "mixture: give either counts or weights"),
        ({"mixture": {"weights": {"qa": 1}}}, "mixture.total: must be a positive integer with weights"),
        ({"mixture": {"counts": {"webvid": 3}}}, "mixture.counts.webvid: unknown source 'webvid'"),
        ({"mixture": {"counts": {"qa": -1}}}, "mixture.counts.qa: must be an integer >= 0"),
        ({"mixture": {"counts": {"qa": 1}, "total": 5}}, "mixture.total: only with weights"),
        ({"mixture": {"counts": {"qa": 1}, "sed": 5}}, "mixture.sed: unknown key"),
        ({"max_words": 3}, "max_words: unknown key"),
    ],
)
def test_settings_errors_name_the_key(given: dict, message: str) -> None:
    with pytest.raises(FilterError) as raised:
        FilterSettings.from_dict(given, SOURCES)
    assert str(raised.value).startswith(message)


def test_settings_resolve_sources_and_mixtures() -> None:
    settings = FilterSettings.from_dict(
        {"video_disjoint": True, "mixture": {"seed": 7, "total": 30000, "weights": {"qa": 2, "synthetic": 1}}}, SOURCES
    )
    assert settings.video_disjoint == ("qa", "caption", "synthetic")
    assert settings.mixture == Mixture(seed=7, quotas={"qa": 20000, "synthetic": 10000})
    assert FilterSettings.from_dict({}, SOURCES) == FilterSettings()


def config_with(**raw):
    model = {"name": "m", "profile": "minicpm-llama3-v2_5"}
    return parse_config({"lake": "/tmp/lake", "models": [model],
                         "sources": [{"name": name, "format": "videochat2", "annotations": f"{name}.json"} for name in SOURCES],
                         **raw})


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"filters": {"min_frames": 0}}, "filters.min_frames: must be a positive integer"),
        ({"models": [{"name": "m", "profile": "minicpm-llama3-v2_5", "filters": {"mixture": {"counts": {"x": 1}}}}]},
         "models[0].filters.mixture.counts.x: unknown source 'x'"),
        ({"models": [{"name": "m", "profile": "minicpm-llama3-v2_5", "filters": []}]},
         "models[0].filters: must be a mapping"),
        ({"shards": {"balance": "tokens"}}, "shards.balance: must be one of samples, bytes, got 'tokens'"),
        ({"shards": {"length_order": "desc"}}, "shards.length_order: must be one of none, sort, group"),
        ({"shards": {"bytes_per_shard": 0}}, "shards.bytes_per_shard: must be > 0"),
        ({"shards": {"mimicit_task": "D_C"}}, "shards.mimicit_task: letters and digits only"),
        ({"shards": {"formats": ["mimicit", "otter"]}}, "shards.formats: unknown format 'otter'"),
    ],
)
def test_config_errors_name_the_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        config_with(**raw)
    assert str(raised.value).startswith(message)


def test_a_model_s_filters_override_the_common_ones() -> None:
    config = config_with(
        filters={"max_turn0_words": 40, "refusals": "flag"},
        models=[{"name": "a", "profile": "minicpm-llama3-v2_5"},
                {"name": "b", "profile": "minicpm-llama3-v2_5", "filters": {"max_turn0_words": 100}}],
    )
    assert config.filters == {"a": FilterSettings(max_turn0_words=40, refusals="flag"),
                              "b": FilterSettings(max_turn0_words=100, refusals="flag")}
    assert "filters" not in config.models[1]  # not part of the model profile


def test_mixture_quotas_split_the_total_by_largest_remainder() -> None:
    assert mixture_quotas({"a": 1, "b": 1, "c": 1}, 10) == {"a": 4, "b": 3, "c": 3}
    assert mixture_quotas({"video": 0.7, "text": 0.3}, 7) == {"video": 5, "text": 2}  # 4.9 and 2.1
    quotas = mixture_quotas({"a": 3.3, "b": 1.1, "c": 0.6}, 997)
    assert sum(quotas.values()) == 997 and quotas == {"a": 658, "b": 219, "c": 120}


# --- per-sample filters ---------------------------------------------------------------------


def test_rows_have_every_column_and_a_kept_sample_no_reason(llama3) -> None:
    rows = assess(small_minicpm(), llama3, FilterSettings(), [video("a"), video("b", status="failed")])
    table = pa.Table.from_pylist(rows, schema=TOKEN_LENGTHS)
    assert table.num_rows == 2
    kept, missing = rows
    assert kept["kept"] and kept["fits"] and kept["reason"] is None and kept["flags"] == []
    assert (kept["n_frames"], kept["frame_budget"], kept["trimmed"]) == (4, 16, False)
    text_bytes = sum(len(t["content"].encode()) for t in video("a")["conversations"])
    assert kept["payload_bytes"] == text_bytes + 4 * FRAME_BYTES
    assert not missing["kept"] and not missing["fits"] and missing["n_frames"] == 0
    assert missing["reason"] == "frames missing for media 0 (failed)"


def test_media_layout_one_video_in_the_first_turn(llama3) -> None:
    one_video = FilterSettings(media_layout="one_video")
    still = sample("still", [("image", 1)], f"{MEDIA_TOKEN} Describe.")
    two = sample("two", [("video", 3), ("video", 3)], f"{MEDIA_TOKEN} versus {MEDIA_TOKEN}?")
    text = sample("text", [], "Tell a story.")
    assert assess_one(video("v"), llama3, one_video)["kept"]
    assert assess_one(still, llama3, one_video)["reason"] == "media layout: 1 media item(s) (image), one video expected"
    assert assess_one(two, llama3, one_video)["reason"] == "media layout: 2 media item(s) (video, video), one video expected"
    assert assess_one(text, llama3, one_video)["reason"] == "media layout: no media (one_video expected)"
    assert assess_one(text, llama3, FilterSettings(media_layout="has_media"))["reason"].startswith("media layout")
    assert all(assess_one(row, llama3)["kept"] for row in (still, two, text))  # "any"


def test_turn0_word_limit_counts_words_not_the_placeholder(llama3) -> None:
    five_words = video("five", question="one two three four five")
    assert assess_one(five_words, llama3, FilterSettings(max_turn0_words=5))["kept"]
    row = assess_one(five_words, llama3, FilterSettings(max_turn0_words=4))
    assert row["reason"] == "turn 0 has 5 words > max_turn0_words 4"


@pytest.mark.parametrize(
    ("answer", "refusal"),
    [
        ("Sorry, I cannot see the video.", True),
        ("I'm sorry, but that is not shown.", True),
        ("As an AI language model, I do not watch videos.", True),
        ("The clip is short. As an AI, I can only guess.", True),
        ("I cannot determine the colour.", True),
        ("The boy says sorry to his sister.", False),
        ("I cannot wait: the ball rolls left.", False),
    ],
)
def test_refusal_answers(llama3, answer: str, refusal: bool) -> None:
    row = assess_one(video("r", answers=("A ball rolls.", answer)), llama3)
    assert row["kept"] is not refusal
    if refusal:
        assert row["reason"] == f"refusal-style answer: {answer[:60]!r}"


def test_quality_findings_can_be_flagged_or_ignored(llama3) -> None:
    empty = video("empty", answers=("  \n",))
    refusing = video("refusing", answers=("As an AI, I cannot say.",))
    assert assess_one(empty, llama3)["reason"] == "empty answer"
    flagged = assess_one(empty, llama3, FilterSettings(empty_answers="flag"))
    assert flagged["kept"] and flagged["flags"] == ["empty answer"]
    ignored = assess_one(refusing, llama3, FilterSettings(refusals="off"))
    assert ignored["kept"] and ignored["flags"] == []
    flagged = assess_one(refusing, llama3, FilterSettings(refusals="flag"))
    assert flagged["kept"] and flagged["flags"][0].startswith("refusal-style answer")


def test_over_budget_because_of_frames_subsamples_them_uniformly_until_it_fits(llama3) -> None:
    profile = small_minicpm()
    row_in = video("long", n_frames=16)
    row = assess_one(row_in, llama3, profile=profile)
    # 16 frames cost 16 * 98 + 15 = 1583 tokens; the text is a few dozen: at most 6 frames fit in 700.
    assert row["kept"] and row["fits"] and row["trimmed"]
    budget = row["frame_budget"]
    assert row["n_frames"] == budget == (profile.max_tokens - row["text_tokens"] + 1) // 99
    assert row["visual_tokens"] == 98 * budget + budget - 1
    assert row["total_tokens"] == row["text_tokens"] + row["visual_tokens"] <= profile.max_tokens
    assert row["text_tokens"] + 98 * (budget + 1) + budget > profile.max_tokens  # one more frame would not fit
    untrimmed = assess_one(row_in, llama3, profile=small_minicpm(max_tokens=10**6))
    assert row["t2vid_estimate"] == untrimmed["t2vid_estimate"] - profile.t2vid_k * (16 - budget)
    # The shards stage gets the same frames back from the same rule and budget.
    [chosen] = select_frames(row_in["media_frames"], budget)
    assert [f["frame_index"] for f in chosen] == uniform_indices(16, budget)
    assert row["payload_bytes"] == sum(len(t["content"].encode()) for t in row_in["conversations"]) + budget * FRAME_BYTES


def test_fitting_stops_at_min_frames_and_never_trims_for_text(llama3) -> None:
    long_video = video("long", n_frames=16)
    no_fit = assess_one(long_video, llama3, FilterSettings(min_frames=7))
    assert not no_fit["kept"] and not no_fit["fits"] and not no_fit["trimmed"] and no_fit["n_frames"] == 16
    assert no_fit["reason"].startswith("over max_tokens (") and no_fit["reason"].endswith(
        "with 16 frames, and with min_frames 7 too")
    not_fitted = assess_one(long_video, llama3, FilterSettings(fit_frames=False))
    assert not_fitted["reason"] == f"over max_tokens ({not_fitted['total_tokens']} > 700)"
    wordy = assess_one(video("wordy", question="word " * 800), llama3)
    assert not wordy["kept"] and not wordy["trimmed"] and wordy["reason"].endswith(
        f"the text alone has {wordy['text_tokens']} tokens")


def test_samples_a_shard_format_cannot_express_are_dropped(llama3) -> None:
    two = sample("two", [("video", 3), ("video", 3)], f"{MEDIA_TOKEN} versus {MEDIA_TOKEN}?")
    text = sample("text", [], "Tell a story.")
    assert assess_one(two, llama3, formats=("minicpmv", "webdataset", "mimicit"))["kept"]
    row = assess_one(two, llama3, formats=("minicpmv", "llava"))
    assert row["reason"] == "not expressible as llava: LLaVA records hold one video; sample has several"
    assert assess_one(text, llama3, formats=("minicpmv",))["reason"].startswith("not expressible as minicpmv")


# --- filters across samples (Spark) ---------------------------------------------------------

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
