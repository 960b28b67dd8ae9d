"""Turn-0 words: T2Vid's limit on the words of the first turn (``max_turn0_words``)."""
from __future__ import annotations

from udfs.filters.base import SampleView, register_check
from udfs.sample import MEDIA_TOKEN


@register_check("turn0_words")
def turn0_words(view: SampleView) -> str | None:
    limit = view.settings.max_turn0_words
    if limit is None:
        return None
    first = view.turn0
    # Whitespace-separated words; a media placeholder is not one.
    words = len(first["content"].replace(MEDIA_TOKEN, " ").split()) if first else 0
    return f"turn 0 has {words} words > max_turn0_words {limit}" if words > limit else None
