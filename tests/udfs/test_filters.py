"""Filters: the per-sample ones in ``udfs.filters`` (plain Python, the real Llama 3 tokenizer),
their settings and their config sections. The filters comparing samples, in
``jobs.cross_filters``, are in tests/jobs/test_cross_filters.py."""
from __future__ import annotations

import pyarrow as pa
import pytest

from framelake.config import ConfigError, parse_config
from tests.support.paths import PROFILE_DIR
from tests.support.samples import FRAME_BYTES, sample, video
from udfs.filters import FilterError, FilterSettings, Mixture, assess, mixture_quotas
from udfs.sample import MEDIA_TOKEN
from udfs.sampling import uniform_indices
from udfs.schemas import TOKEN_LENGTHS
from udfs.selection import select_frames
from udfs.token_lengths import ModelProfile, load_profile
from udfs.tokenizers import load_counter

SOURCES = ["qa", "caption", "synthetic"]


def small_minicpm(**changes) -> ModelProfile:
    """MiniCPM-Llama3-V 2.5 (98 tokens per 64x48 frame, 1 between frames) with a small budget."""
    base = load_profile("minicpm-llama3-v2_5", [PROFILE_DIR])
    return ModelProfile.from_dict({**base, "max_tokens": 700, "max_frames": 16, **changes})


@pytest.fixture(scope="module")
def llama3():
    return load_counter("llama3")



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
                         "sources": [{"name": name, "format": "videochat2", "annotations": f"{name}.json"}
                                     for name in SOURCES],
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
    assert "filters" not in config.models[1].as_dict()  # not part of the model profile


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
    assert assess_one(still, llama3, one_video)["reason"] == (
        "media layout: 1 media item(s) (image), one video expected")
    assert assess_one(two, llama3, one_video)["reason"] == (
        "media layout: 2 media item(s) (video, video), one video expected")
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


def test_the_first_reason_wins_and_later_findings_are_still_flagged(llama3) -> None:
    answers = ("Sorry, no.", " ")  # a refusal, then an empty answer
    missing = assess_one(video("m", status="failed", answers=answers), llama3, FilterSettings(empty_answers="flag"))
    assert (missing["reason"], missing["flags"]) == ("frames missing for media 0 (failed)", ["empty answer"])
    empty = assess_one(video("e", answers=answers), llama3, FilterSettings(refusals="flag"))
    assert (empty["reason"], empty["flags"]) == ("empty answer", ["refusal-style answer: 'Sorry, no.'"])


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
    text_bytes = sum(len(t["content"].encode()) for t in row_in["conversations"])
    assert row["payload_bytes"] == text_bytes + budget * FRAME_BYTES


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
