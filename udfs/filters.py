"""Which samples a model trains on: T2Vid's filters, frame fitting, quality checks, mixtures.

Pure Python. ``assess`` turns a batch of samples, with the frames of their media, into
``TOKEN_LENGTHS`` rows for one model: the token counts, the frames used, and whether the
sample is kept (else the reason). The filters that compare samples with each other (exact
duplicates, video-disjoint sources, mixtures) need the whole table, so the tokens job runs
them in Spark with the settings defined here; ``mixture_quotas`` is their pure part.

A dropped sample gets the first reason in this order: frames missing, media layout, turn-0
words, empty answer, refusal, token budget, a shard format that cannot express it.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from udfs.sample import MEDIA_TOKEN, RejectError
from udfs.selection import select_frames
from udfs.shards import format_problem
from udfs.token_lengths import ModelProfile, token_lengths, visual_cost
from udfs.tokenizers import TokenCounter
from udfs.visual_tokens import VIDEO_KINDS

# "any": what normalize accepted; "has_media": at least one media item (MiniCPM-V needs an
# image); "one_video": exactly one video whose placeholder is in the first turn (T2Vid).
MEDIA_LAYOUTS = ("any", "has_media", "one_video")
# What a quality filter does with a finding: drop the sample, flag it in ``flags``, or not look.
QUALITY_MODES = ("drop", "flag", "off")
# Refusal-style answers, as VideoChat2-IT's curation removed them ("Sorry, ...", "As an AI ...").
# Searched case-insensitively in every assistant turn, stripped.
REFUSAL_PATTERNS = (
    r"^(i['’]?m |i am )?(so |very |really )?sorry\b",
    r"^(my )?apolog(y|ies|i[sz]e)\b",
    r"\bas an ai\b",
    r"^i (cannot|can['’]?t|can not|am unable to|['’]?m unable to|am not able to) "
    r"(answer|help|assist|see|view|watch|tell|determine|provide)\b",
)


class FilterError(ValueError):
    """An invalid filter setting; the message starts with the key it is about."""


@dataclass(frozen=True)
class Mixture:
    """How many kept samples each source contributes, drawn deterministically.

    A source's samples are ranked by ``sha256("<seed>:<sample_id>")`` (hex) and the first
    ``quotas[source]`` are kept; sources without a quota are left out of the mix. A source
    with fewer samples than its quota contributes all of them (no repetition).
    """

    seed: int
    quotas: dict[str, int]


@dataclass(frozen=True)
class FilterSettings:
    """The filters of one model (top-level ``filters:`` merged with the model's own)."""

    media_layout: str = "any"
    max_turn0_words: int | None = None  # drop when the first user turn has more words
    fit_frames: bool = True  # over max_tokens because of frames: subsample them instead of dropping
    min_frames: int = 4  # ... but not below this frame budget
    refusals: str = "drop"
    refusal_patterns: tuple[str, ...] = REFUSAL_PATTERNS
    empty_answers: str = "drop"
    duplicates: str = "drop"
    video_disjoint: tuple[str, ...] = ()  # sources in priority order; a shared video stays with the first
    mixture: Mixture | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], sources: Sequence[str]) -> FilterSettings:
        """Validated settings; ``sources`` are the configured source names, in config order."""
        if not isinstance(data, Mapping):
            raise FilterError(f"filters: must be a mapping, got {type(data).__name__}")
        known = [f.name for f in cls.__dataclass_fields__.values()]
        for key in data:
            if key not in known:
                raise FilterError(f"{key}: unknown key (known: {', '.join(known)})")
        values = {
            "media_layout": _choice(data, "media_layout", MEDIA_LAYOUTS),
            "max_turn0_words": _positive_int(data, "max_turn0_words", optional=True),
            "fit_frames": _bool(data, "fit_frames"),
            "min_frames": _positive_int(data, "min_frames"),
            "refusals": _choice(data, "refusals", QUALITY_MODES),
            "refusal_patterns": _patterns(data),
            "empty_answers": _choice(data, "empty_answers", QUALITY_MODES),
            "duplicates": _choice(data, "duplicates", QUALITY_MODES),
            "video_disjoint": _video_disjoint(data, sources),
            "mixture": _mixture(data.get("mixture"), sources),
        }
        return cls(**{key: value for key, value in values.items() if key in data})


def _choice(data: Mapping, key: str, allowed: tuple[str, ...]) -> Any:
    value = data.get(key)
    if key in data and value not in allowed:
        raise FilterError(f"{key}: must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(data: Mapping, key: str, optional: bool = False) -> Any:
    value = data.get(key)
    if key in data and not (optional and value is None) and not (_is_int(value) and value > 0):
        raise FilterError(f"{key}: must be a positive integer{' or null' if optional else ''}, got {value!r}")
    return value


def _bool(data: Mapping, key: str) -> Any:
    if key in data and not isinstance(data[key], bool):
        raise FilterError(f"{key}: must be true or false, got {data[key]!r}")
    return data.get(key)


def _patterns(data: Mapping) -> tuple[str, ...] | None:
    if "refusal_patterns" not in data:
        return None
    patterns = data["refusal_patterns"]
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise FilterError(f"refusal_patterns: must be a list of regular expressions, got {patterns!r}")
    for i, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as err:
            raise FilterError(f"refusal_patterns[{i}]: not a regular expression: {err}") from None
    return tuple(patterns)


def _video_disjoint(data: Mapping, sources: Sequence[str]) -> tuple[str, ...] | None:
    value = data.get("video_disjoint")
    if value is None or value is False:
        return ()
    if value is True:
        return tuple(sources)
    if not isinstance(value, list) or len(value) < 2 or len(set(value)) != len(value):
        raise FilterError(f"video_disjoint: must be true, false or a list of two or more sources, got {value!r}")
    for i, name in enumerate(value):
        _known_source(name, sources, f"video_disjoint[{i}]")
    return tuple(value)


def _known_source(name: Any, sources: Sequence[str], where: str) -> None:
    if name not in sources:
        raise FilterError(f"{where}: unknown source {name!r} (known: {', '.join(sources)})")


def _mixture(value: Any, sources: Sequence[str]) -> Mixture | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise FilterError(f"mixture: must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - {"seed", "counts", "weights", "total"})
    if unknown:
        raise FilterError(f"mixture.{unknown[0]}: unknown key (known: counts, seed, total, weights)")
    seed = value.get("seed", 0)
    if not _is_int(seed):
        raise FilterError(f"mixture.seed: must be an integer, got {seed!r}")
    if ("counts" in value) == ("weights" in value):
        raise FilterError("mixture: give either counts or weights")
    kind = "counts" if "counts" in value else "weights"
    shares = value[kind]
    if not isinstance(shares, Mapping) or not shares:
        raise FilterError(f"mixture.{kind}: must be a non-empty mapping of source to number")
    for name, share in shares.items():
        _known_source(name, sources, f"mixture.{kind}.{name}")
        number = _is_int(share) if kind == "counts" else isinstance(share, (int, float)) and not isinstance(share, bool)
        if not number or share < 0 or (kind == "weights" and share == 0):
            expected = "an integer >= 0" if kind == "counts" else "a number > 0"
            raise FilterError(f"mixture.{kind}.{name}: must be {expected}, got {share!r}")
    total = value.get("total")
    if kind == "counts":
        if total is not None:
            raise FilterError("mixture.total: only with weights (counts give the total)")
        return Mixture(seed=seed, quotas=dict(shares))
    if not (_is_int(total) and total > 0):
        raise FilterError(f"mixture.total: must be a positive integer with weights, got {total!r}")
    return Mixture(seed=seed, quotas=mixture_quotas(shares, total))


def mixture_quotas(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """``total`` split by weight with the largest-remainder rule: the quotas sum to ``total``,
    and leftover units go to the largest fractions (ties: source name order)."""
    whole = sum(weights.values())
    exact = {name: total * weight / whole for name, weight in weights.items()}
    quotas = {name: math.floor(share) for name, share in exact.items()}
    leftover = total - sum(quotas.values())
    for name in sorted(exact, key=lambda n: (quotas[n] - exact[n], n))[:leftover]:
        quotas[name] += 1
    return quotas


# ---------------------------------------------------------------------------------------------
# Per-sample filters
# ---------------------------------------------------------------------------------------------


def media_kind(media_frames: Sequence[Mapping]) -> str:
    """The kind the visual rule prices: "text", "image" (stills only) or "video"."""
    kinds = {m["kind"] for m in media_frames}
    if not kinds:
        return "text"
    return "image" if kinds == {"image"} else "video"


def _first_turn(conversations: Sequence[Mapping]) -> Mapping | None:
    """Turn 0 as T2Vid sees it: the first turn after any system turns."""
    return next((t for t in conversations if t["role"] != "system"), None)


def layout_problem(media_frames: Sequence[Mapping], conversations: Sequence[Mapping], layout: str) -> str | None:
    if layout == "any":
        return None
    kinds = [m["kind"] for m in media_frames]
    if not kinds:
        return f"media layout: no media ({layout} expected)"
    if layout == "has_media":
        return None
    if len(kinds) != 1 or kinds[0] not in VIDEO_KINDS:
        return f"media layout: {len(kinds)} media item(s) ({', '.join(kinds)}), one video expected"
    first = _first_turn(conversations)
    if first is None or first["role"] != "user" or first["content"].count(MEDIA_TOKEN) != 1:
        return "media layout: the video is not in the first turn"
    return None


def turn0_words(conversations: Sequence[Mapping]) -> int:
    """Words (whitespace-separated) of turn 0, media placeholders not counted."""
    first = _first_turn(conversations)
    return len(first["content"].replace(MEDIA_TOKEN, " ").split()) if first else 0


def empty_answer(conversations: Sequence[Mapping]) -> str | None:
    if any(t["role"] == "assistant" and not t["content"].strip() for t in conversations):
        return "empty answer"
    return None


@functools.lru_cache(maxsize=16)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    # Each on its own: patterns valid alone (inline flags, say) need not be valid joined.
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


def refusal(conversations: Sequence[Mapping], patterns: tuple[str, ...]) -> str | None:
    compiled = _compiled(patterns)
    for turn in conversations:
        answer = turn["content"].strip()
        if turn["role"] == "assistant" and any(regex.search(answer) for regex in compiled):
            return f"refusal-style answer: {answer[:60]!r}"
    return None


def fit_frames(
    media_frames: Sequence[Mapping], profile: ModelProfile, text_tokens: int, used: int, min_frames: int
) -> tuple[int, list[list[dict]], int] | None:
    """(budget, frames, visual tokens) of the largest frame budget in ``[min_frames, used - 1]``
    whose frames fit ``max_tokens`` next to ``text_tokens``; None if even ``min_frames`` do not.

    Each budget picks its frames with ``select_frames`` (T2Vid's uniform rule per video). A
    smaller budget never costs more visual tokens, so the largest fitting budget is found by
    bisection.
    """
    kind = media_kind(media_frames)

    def frames_if_fitting(budget: int) -> tuple[list[list[dict]], int] | None:
        try:
            selected = select_frames(media_frames, budget)
        except RejectError:  # fewer frames than media items
            return None
        visual, problem = visual_cost(profile, _sizes(selected), kind)
        if problem or text_tokens + visual > profile.max_tokens:
            return None
        return selected, visual

    best, low, high = None, min_frames, used - 1
    while low <= high:
        budget = (low + high) // 2
        found = frames_if_fitting(budget)
        if found:
            best, low = (budget, *found), budget + 1
        else:
            high = budget - 1
    return best


def _sizes(selected: Sequence[Sequence[Mapping]]) -> list[tuple[int, int]]:
    return [(f["width"], f["height"]) for frames in selected for f in frames]


@dataclass
class _Assessment:
    """One sample's frames and findings while its row is put together."""

    sample: Mapping
    selected: list[list[dict]] | None
    problems: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def finding(self, message: str | None, mode: str) -> None:
        if message and mode == "drop":
            self.problems.append(message)
        elif message and mode == "flag":
            self.flags.append(message)


def assess(
    profile: ModelProfile,
    counter: TokenCounter,
    settings: FilterSettings,
    batch: Sequence[Mapping],
    formats: Sequence[str] = (),
) -> list[dict]:
    """One ``TOKEN_LENGTHS`` row per sample of ``batch`` (``settings`` column left null).

    A sample has ``sample_id``, ``conversations`` and ``media_frames`` (per media item, in
    order: ``kind``, ``status``, ``frames`` with ``uri``, sizes and ``bytes``); to be checked
    against shard ``formats`` it also needs ``media`` and ``in_context``. Frames are chosen by
    ``select_frames`` with ``frame_budget``: ``max_frames``, or less when the sample is over
    ``max_tokens`` only because of its frames and ``fit_frames`` is on.
    """
    assessments = []
    for sample in batch:
        try:
            assessments.append(_Assessment(sample, select_frames(sample["media_frames"], profile.max_frames)))
        except RejectError as err:
            assessments.append(_Assessment(sample, None, [str(err)]))
    rows = token_lengths(profile, counter, [
        {"sample_id": a.sample["sample_id"], "conversations": a.sample["conversations"],
         "frame_sizes": _sizes(a.selected or []), "media_kind": media_kind(a.sample["media_frames"])}
        for a in assessments
    ])
    for assessment, row in zip(assessments, rows):
        row.update(frame_budget=profile.max_frames, trimmed=False, settings=None)
        _check(assessment, row, profile, settings, formats)
        row.update(kept=not assessment.problems, reason=next(iter(assessment.problems), None),
                   flags=assessment.flags)
    return rows


def _check(a: _Assessment, row: dict, profile: ModelProfile, settings: FilterSettings, formats: Sequence[str]) -> None:
    sample, conversations = a.sample, a.sample["conversations"]
    a.finding(layout_problem(sample["media_frames"], conversations, settings.media_layout), "drop")
    words = turn0_words(conversations)
    if settings.max_turn0_words is not None and words > settings.max_turn0_words:
        a.finding(f"turn 0 has {words} words > max_turn0_words {settings.max_turn0_words}", "drop")
    a.finding(empty_answer(conversations), settings.empty_answers)
    if settings.refusals != "off":
        a.finding(refusal(conversations, settings.refusal_patterns), settings.refusals)
    if a.selected is not None and row["total_tokens"] is not None and row["total_tokens"] > profile.max_tokens:
        _fit(a, row, profile, settings)
    if row["reason"] and a.selected is not None:
        a.problems.append(row["reason"])
    row["payload_bytes"] = sum(len(t["content"].encode("utf-8")) for t in conversations) + sum(
        f["bytes"] for frames in a.selected or [] for f in frames
    )
    if formats and a.selected is not None and not a.problems:
        frames = [[{**f, "path": f["uri"]} for f in item] for item in a.selected]
        a.finding(format_problem(sample, frames, formats), "drop")


def _fit(a: _Assessment, row: dict, profile: ModelProfile, settings: FilterSettings) -> None:
    """Over ``max_tokens``: subsample the frames to fit, when only the frames are the problem."""
    over = row["reason"]
    if not settings.fit_frames:
        return
    if row["text_tokens"] > profile.max_tokens:
        row["reason"] = f"{over}; the text alone has {row['text_tokens']} tokens"
        return
    fitted = fit_frames(a.sample["media_frames"], profile, row["text_tokens"], row["n_frames"], settings.min_frames)
    if fitted is None:
        row["reason"] = f"{over} with {row['n_frames']} frames, and with min_frames {settings.min_frames} too"
        return
    budget, a.selected, visual = fitted
    n_frames = sum(map(len, a.selected))
    row.update(
        n_frames=n_frames, visual_tokens=visual, total_tokens=row["text_tokens"] + visual,
        t2vid_estimate=row["t2vid_estimate"] + profile.t2vid_k * (n_frames - row["n_frames"]),
        fits=True, reason=None, frame_budget=budget, trimmed=True,
    )
