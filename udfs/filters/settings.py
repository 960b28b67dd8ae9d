"""The filter settings of one model, parsed and validated; no checks run here.

``FilterSettings.from_dict`` reads a ``filters:`` mapping (top level merged with a model's
own) and raises ``FilterError`` naming the key. ``mixture_quotas`` is the pure part of the
mixture, which the tokens stage draws in Spark (``jobs.cross_filters``).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

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
