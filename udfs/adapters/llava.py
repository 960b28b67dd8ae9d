"""LLaVA style: ``{"id", "image"|"video": path or [paths], "conversations": [{"from", "value"}]}``.

``from`` is "human", "gpt" or "system". ``<image>`` and ``<video>`` tags become placeholders
in place; there must be one tag per media item, except that a record with one media item and
no tag gets the placeholder prepended to its first user turn (LLaVA's convention).

Media:
- ``image``: a path or a list of paths, one image item each (one tag each);
- ``video``: a path, a video file or, without extension, a frames folder (one tag);
- ``video`` as a list of frame image paths is one video given as frames: one ``image`` item
  per frame, ``media_type`` "video", and its single tag stands for one placeholder per frame
  (joined by newlines). Writing LLaVA back, a "video" sample whose media are all images is a
  ``video`` list and its run of placeholders one ``<video>`` tag.
"""

from __future__ import annotations

import re

from udfs.adapters import NormalizeContext, register
from udfs.adapters.base import JsonRecordsAdapter, SampleParts
from udfs.adapters.common import (
    LLAVA_ROLES,
    VIDEO_EXTENSIONS,
    expand_placeholder,
    extension,
    media_item,
    place_media,
    substitute_tags,
    turns_from_items,
    video_kind,
)
from udfs.sample import RejectError

_LLAVA_TAG = re.compile(r"<image>|<video>")


@register("llava")
class LlavaAdapter(JsonRecordsAdapter):
    def parts_of(self, obj: dict, ctx: NormalizeContext) -> SampleParts:
        turns, tags = substitute_tags(
            turns_from_items(obj, text_key="value", role_key="from", roles=LLAVA_ROLES), _LLAVA_TAG
        )
        if isinstance(obj.get("video"), list):
            frames = _frames(obj, ctx)
            turns = expand_placeholder(place_media(turns, len(tags), 1), len(frames))
            return SampleParts(media=frames, conversations=turns, media_type="video")
        media = _media(obj, ctx)
        return SampleParts(media=media, conversations=place_media(turns, len(tags), len(media)))


def _media(obj: dict, ctx: NormalizeContext) -> list[dict]:
    if "image" in obj and "video" in obj:
        raise RejectError("record has both 'image' and 'video'")
    if "video" in obj:
        return [media_item(video_kind(obj["video"]), obj["video"], ctx)]
    if "image" not in obj:
        return []
    paths = obj["image"]
    if isinstance(paths, list):
        if not paths:
            raise RejectError("image is an empty array")
        return [media_item("image", path, ctx) for path in paths]
    return [media_item("image", paths, ctx)]


def _frames(obj: dict, ctx: NormalizeContext) -> list[dict]:
    if "image" in obj:
        raise RejectError("record has both 'image' and 'video'")
    paths = obj["video"]
    if not paths:
        raise RejectError("video is an empty array")
    for path in paths:
        if isinstance(path, str) and extension(path) in VIDEO_EXTENSIONS:
            raise RejectError(f"video list holds a video file {path[:200]!r}; expected frame images")
    return [media_item("image", path, ctx) for path in paths]
