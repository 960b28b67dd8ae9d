"""``{"id", "video", "conversations": [{"value"}, ...]}`` records: T2Vid's re-arranged jsonl of
Video-ChatGPT and ShareGemini (``utils/preprocess/reformat_json.py``), and T2Vid's synthetic
"fake video" JSON, whose ``video`` is a folder of rendered text frames.

Roles come from the position (even = user, odd = assistant); ``from`` is ignored, as in
T2Vid. ``video`` is a video file, or a frames folder when it has no extension. The single
``<video>`` tag stays in place; without one, the placeholder is prepended to turn 0. The raw
ShareGemini schema is unverified: only these fields are read. Arrays are read as well as jsonl.
"""

from __future__ import annotations

import re

from udfs.adapters import NormalizeContext, register
from udfs.adapters.base import JsonRecordsAdapter, SampleParts
from udfs.adapters.common import field, media_item, place_media, substitute_tags, turns_from_items, video_kind

_VIDEO_TAG = re.compile(r"<video>")


@register("conversations_jsonl")
class ConversationsJsonlAdapter(JsonRecordsAdapter):
    def parts_of(self, obj: dict, ctx: NormalizeContext) -> SampleParts:
        video = field(obj, "video", str)
        turns, tags = substitute_tags(turns_from_items(obj, text_key="value"), _VIDEO_TAG)
        return SampleParts(
            media=[media_item(video_kind(video), video, ctx)],
            conversations=place_media(turns, len(tags), 1),
        )
