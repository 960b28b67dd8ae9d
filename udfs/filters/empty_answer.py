"""Empty answer: an assistant turn with nothing but whitespace (``empty_answers``)."""
from __future__ import annotations

from udfs.filters.base import SampleView, register_check


@register_check("empty_answer", mode="empty_answers")
def empty_answer(view: SampleView) -> str | None:
    if any(t["role"] == "assistant" and not t["content"].strip() for t in view.conversations):
        return "empty answer"
    return None
