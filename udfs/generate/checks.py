"""What a reply must pass before its pairs become a sample; each check returns the reason of
the reject, or None. Replies that are empty, cut off at ``max_tokens``, refusals, pairs with an
empty side, and translations in another script or that lost a media placeholder are rejected."""
from __future__ import annotations

import functools
import re
from typing import Sequence

from udfs.filters.settings import REFUSAL_PATTERNS
from udfs.generate.parsers import Pair
from udfs.generate.scripts import LanguageScript, script_problem
from udfs.sample import MEDIA_TOKEN


@functools.lru_cache(maxsize=8)
def _refusals(patterns: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


def refusal(text: str, patterns: tuple[str, ...] = REFUSAL_PATTERNS) -> str | None:
    """The refusal filter's patterns (``udfs.filters.refusal``) on one text, stripped."""
    stripped = text.strip()
    if any(regex.search(stripped) for regex in _refusals(patterns)):
        return f"refusal: {stripped[:60]!r}"
    return None


def reply_problem(reply: str | None, finish_reason: str | None, max_tokens: int) -> str | None:
    """A reply that is empty, cut off at ``max_tokens`` (its last pair would be cut too), or a refusal."""
    if reply is None or not reply.strip():
        return "empty reply"
    if finish_reason == "length":
        return f"over length: the reply reached max_tokens ({max_tokens}) before it ended"
    return refusal(reply)


def pairs_problem(pairs: Sequence[Pair]) -> str | None:
    for k, (question, answer) in enumerate(pairs):
        if not question.replace(MEDIA_TOKEN, "").strip():
            return f"empty question in pair {k}"
        if not answer.strip():
            return f"empty answer in pair {k}"
        if found := refusal(answer):
            return f"{found} (pair {k})"
    return None


def translation_problem(original: Sequence[Pair], translated: Sequence[Pair], language: LanguageScript,
                        min_share: float) -> str | None:
    """A translation that lost or moved a media placeholder, is not in the target script, or
    repeats the original."""
    for k, ((q, a), (tq, ta)) in enumerate(zip(original, translated)):
        if (q.count(MEDIA_TOKEN), a.count(MEDIA_TOKEN)) != (tq.count(MEDIA_TOKEN), ta.count(MEDIA_TOKEN)):
            return f"media placeholder lost in translation (pair {k}: {q.count(MEDIA_TOKEN)} in the original)"
    text = " ".join(f"{q} {a}" for q, a in translated).replace(MEDIA_TOKEN, " ")
    if problem := script_problem(text, language, min_share):
        return problem
    if [(q.strip(), a.strip()) for q, a in translated] == [(q.strip(), a.strip()) for q, a in original]:
        return f"not translated: the reply repeats the original, expected {language.name}"
    return None
