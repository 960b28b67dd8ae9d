"""VideoChat2-IT (OpenGVLab/Ask-Anything, ``video_chat2/dataset/it_dataset.py``).

A record is ``{"video"|"image": path, "QA": [{"i", "q", "a"}, ...], "start"?, "end"?}``: an
optional system turn from ``QA[0]["i"]`` (the other items' ``i`` are unused, as in the
source), then a user/assistant pair per QA item. The source has no media placeholder, so
``<media>`` starts the first user turn; an empty first question (captioning sets) leaves the
placeholder alone as the user turn. ``start``/``end`` (seconds) clip the video.

The media kind comes from the source's ``media_type`` when the config sets it ("video",
"image" or "text"; VideoChat2's own config means images when it gives no type), else from the
key. GIFs (TGIF) are always videos. Records have no id: samples are keyed by index.
"""

from __future__ import annotations

from udfs.adapters import NormalizeContext, register
from udfs.adapters.base import JsonRecordsAdapter, SampleParts
from udfs.adapters.common import (
    extension,
    field,
    media_item,
    require_object,
    required,
    source_text,
    system_turns,
    with_media_prefix,
)
from udfs.sample import RejectError, turn

_KIND_OF_MEDIA_TYPE = {"video": "video", "image": "image", "images": "image"}


@register("videochat2")
class VideoChat2Adapter(JsonRecordsAdapter):
    def parts_of(self, obj: dict, ctx: NormalizeContext) -> SampleParts:
        media = _media(obj, ctx)
        qa = field(obj, "QA", list)
        if not qa:
            raise RejectError("QA is empty")
        items = [require_object(item, f"QA[{k}]") for k, item in enumerate(qa)]
        instruction = items[0].get("i")
        turns = [] if instruction is None else system_turns(source_text(instruction, "QA[0].i"))
        for k, item in enumerate(items):
            question = source_text(required(item, "q", f"QA[{k}]"), f"QA[{k}].q")
            answer = source_text(required(item, "a", f"QA[{k}]"), f"QA[{k}].a")
            if k == 0:
                question = with_media_prefix(question, len(media))
            turns += [turn("user", question), turn("assistant", answer)]
        return SampleParts(media=media, conversations=turns)


def _media(obj: dict, ctx: NormalizeContext) -> list[dict]:
    media_type = ctx.spec.media_type
    keys = [key for key in ("video", "image") if key in obj]
    if len(keys) == 2:
        raise RejectError("record has both 'video' and 'image'")
    if media_type == "text":
        if keys:
            raise RejectError(f"{keys[0]!r} given in a text-only source")
        return []
    if media_type is not None and media_type not in _KIND_OF_MEDIA_TYPE:
        raise RejectError(f"unknown source media_type {media_type!r}")
    if not keys:
        raise RejectError("record has neither 'video' nor 'image'")
    path = obj[keys[0]]
    kind = _KIND_OF_MEDIA_TYPE.get(media_type, keys[0])
    if isinstance(path, str) and extension(path) == ".gif":
        kind = "video"
    start, end = obj.get("start"), obj.get("end")
    if kind == "image" and (start is not None or end is not None):
        raise RejectError("clip bounds given for an image")
    return [media_item(kind, path, ctx, start, end)]
