"""Media layout: the media a model's samples must have (``media_layout``, one of
``udfs.filters.settings.MEDIA_LAYOUTS``)."""
from __future__ import annotations

from udfs.filters.base import SampleView, register_check
from udfs.sample import MEDIA_TOKEN
from udfs.visual_tokens import VIDEO_KINDS


@register_check("media_layout")
def media_layout(view: SampleView) -> str | None:
    layout = view.settings.media_layout
    if layout == "any":
        return None
    kinds = [m["kind"] for m in view.sample["media_frames"]]
    if not kinds:
        return f"media layout: no media ({layout} expected)"
    if layout == "has_media":
        return None
    if len(kinds) != 1 or kinds[0] not in VIDEO_KINDS:
        return f"media layout: {len(kinds)} media item(s) ({', '.join(kinds)}), one video expected"
    first = view.turn0
    if first is None or first["role"] != "user" or first["content"].count(MEDIA_TOKEN) != 1:
        return "media layout: the video is not in the first turn"
    return None
