"""Refusal: an assistant turn (stripped) in which one of ``refusal_patterns`` is found,
case-insensitively (``refusals``)."""
from __future__ import annotations

import functools
import re

from udfs.filters.base import SampleView, register_check


@functools.lru_cache(maxsize=16)
def _compiled(patterns: tuple[str, ...]) -> tuple[re.Pattern, ...]:
    # Each on its own: patterns valid alone (inline flags, say) need not be valid joined.
    return tuple(re.compile(p, re.IGNORECASE) for p in patterns)


@register_check("refusal", mode="refusals")
def refusal(view: SampleView) -> str | None:
    compiled = _compiled(view.settings.refusal_patterns)
    for turn in view.conversations:
        answer = turn["content"].strip()
        if turn["role"] == "assistant" and any(regex.search(answer) for regex in compiled):
            return f"refusal-style answer: {answer[:60]!r}"
    return None
