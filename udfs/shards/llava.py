"""LLaVA-style JSON records: ``<media>`` becomes ``<image>`` or ``<video>`` in place."""
from __future__ import annotations

import re
from typing import Any

from udfs.sample import MEDIA_TOKEN
from udfs.shards.base import Frames, register_format
from udfs.shards.common import JsonShardFormat, check_frames, reject_text_matching

LLAVA_TAGS = {"image": "<image>", "video": "<video>", "frames_dir": "<video>"}
LLAVA_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}
_LLAVA_TAG = re.compile("|".join(map(re.escape, sorted(set(LLAVA_TAGS.values())))))


def to_llava(sample: dict, frames: Frames) -> dict:
    """The LLaVA-style record of a sample: ``<media>`` becomes ``<image>`` or ``<video>`` in place.

    ``image`` lists the paths of the image media in media order; ``video`` lists the frame paths
    of the one video (kind ``video`` or ``frames_dir``). A reader maps the k-th tag of the text to
    the next entry of the list its tag names, which gives the canonical sample back. LLaVA keys
    one video per record, so a sample with several videos raises ``ValueError``, as does text
    that already contains ``<image>`` or ``<video>`` (the tag count would no longer match).
    A video that was read as a ``video`` list of frame images (media_type "video", all media
    images, their placeholders one newline-joined run) is written back the same way.
    """
    check_frames(sample, frames)
    media = sample["media"]
    if sum(item["kind"] != "image" for item in media) > 1:
        raise ValueError("LLaVA records hold one video; sample has several")
    reject_text_matching(sample["conversations"], _LLAVA_TAG, "a LLaVA media tag")
    record: dict[str, Any] = {"id": sample["sample_id"]}
    frames_run = "\n".join([MEDIA_TOKEN] * len(media))
    if (sample.get("media_type") == "video" and media and all(item["kind"] == "image" for item in media)
            and sum(t["content"].count(frames_run) for t in sample["conversations"]) == 1):
        record["video"] = [item_frames[0]["path"] for item_frames in frames]
        tag_media = lambda text: text.replace(frames_run, LLAVA_TAGS["video"])  # noqa: E731
    else:
        images = [item_frames[0]["path"] for item, item_frames in zip(media, frames) if item["kind"] == "image"]
        video = [f["path"] for item, item_frames in zip(media, frames) if item["kind"] != "image" for f in item_frames]
        if images:
            record["image"] = images
        if video:
            record["video"] = video
        tags = iter([LLAVA_TAGS[item["kind"]] for item in media])
        tag_media = lambda text: re.sub(re.escape(MEDIA_TOKEN), lambda _: next(tags), text)  # noqa: E731
    record["conversations"] = [
        {"from": LLAVA_ROLES[t["role"]], "value": tag_media(t["content"])} for t in sample["conversations"]
    ]
    return record


@register_format("llava")
class LlavaFormat(JsonShardFormat):
    def record(self, sample: dict, frames: Frames) -> dict:
        return to_llava(sample, frames)
