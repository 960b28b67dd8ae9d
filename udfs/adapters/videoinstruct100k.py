"""VideoInstruct-100K (mbzuai-oryx/Video-ChatGPT), raw or converted to its training format.

Raw records are ``{"video_id", "q", "a"}``; ActivityNet ids carry no extension, so the file
is ``video_id`` + the source option ``video_ext`` (default ".mp4"; an id that already ends in
a video extension is kept). No file system look-up is made: adapters stay pure. The
placeholder starts the question.

Converted records (``scripts/convert_instruction_json_to_training_format.py``) are
``{"id", "video": "<video_id>.pkl", "conversations": [{"from": "human", "value": "q\\n<video>"},
{"from": "gpt", "value": "a"}]}``: the ``.pkl`` feature file maps back to the video id +
``video_ext``, and ``<video>`` stays where it is (after the question on even records, before
it on odd ones).

``id`` is the video id, shared by every question about that video, so samples are keyed by
index in both forms.
"""

from __future__ import annotations

import re

from udfs.adapters import NormalizeContext, register
from udfs.adapters.base import JsonRecordsAdapter, SampleParts
from udfs.adapters.common import (
    LLAVA_ROLES,
    VIDEO_EXTENSIONS,
    extension,
    field,
    media_item,
    place_media,
    required,
    source_text,
    substitute_tags,
    turns_from_items,
    with_media_prefix,
)
from udfs.adapters.options import Option, file_extension
from udfs.sample import turn

_VIDEO_TAG = re.compile(r"<video>")


@register("videoinstruct100k")
class VideoInstruct100KAdapter(JsonRecordsAdapter):
    uses_record_id = False
    options = {"video_ext": Option(".mp4", file_extension)}

    def parts_of(self, obj: dict, ctx: NormalizeContext) -> SampleParts:
        video_ext = "." + self.option(ctx.spec, "video_ext").lstrip(".")
        if "conversations" in obj:
            video = field(obj, "video", str)
            path = video.removesuffix(".pkl") + video_ext if video.endswith(".pkl") else video
            turns, tags = substitute_tags(
                turns_from_items(obj, text_key="value", role_key="from", roles=LLAVA_ROLES), _VIDEO_TAG
            )
            turns = place_media(turns, len(tags), 1)
        else:
            video_id = field(obj, "video_id", str)
            path = video_id if extension(video_id) in VIDEO_EXTENSIONS else video_id + video_ext
            question = source_text(required(obj, "q"), "q")
            answer = source_text(required(obj, "a"), "a")
            turns = [turn("user", with_media_prefix(question, 1)), turn("assistant", answer)]
        return SampleParts(media=[media_item("video", path, ctx)], conversations=turns)

