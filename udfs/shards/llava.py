"""LLaVA-style JSON records: ``<media>`` becomes ``<image>`` or ``<video>`` in place."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from udfs.shards.base import Frames, register_format
from udfs.shards.common import (
    ConversationJsonFormat,
    check_frames,
    check_turn_order,
    reject_text_matching,
    split_system,
    tag_media,
    with_text_first,
)

LLAVA_TAGS = {"image": "<image>", "video": "<video>"}
# LLaVA's train.py maps "from" through {"human", "gpt"}: it has no system role.
LLAVA_ROLES = {"user": "human", "assistant": "gpt"}
# What ``shards.llava_system`` may say becomes of the system text.
LLAVA_SYSTEM_MODES = ("prepend", "drop")
_LLAVA_TAG = re.compile("|".join(map(re.escape, sorted(LLAVA_TAGS.values()))))


def to_llava(sample: dict, frames: Frames, system: str = "prepend") -> dict:
    """The LLaVA-style record of a sample: ``<media>`` becomes ``<image>`` or ``<video>`` in
    place, in whichever turn it stands (``tag_media``).

    ``image`` is the path of the one image, or the list of image paths in media order (LLaVA's
    train.py opens one path; LLaVA-NeXT and lmms-finetune take either); ``video`` lists the
    frame paths of the one video. Turns are ``human``/``gpt``, alternating from ``human``; the
    text of the leading system turns is prepended to the first human turn (after the tags that
    open it) or, with ``system`` "drop", left out. Raises ``ValueError`` for several videos
    (LLaVA keys one video per record), turns that do not alternate, and text that already
    contains ``<image>`` or ``<video>`` (the tag count would no longer match).
    """
    check_frames(sample, frames)
    reject_text_matching(sample["conversations"], _LLAVA_TAG, "a LLaVA media tag")
    system_text, turns = split_system(sample["conversations"])
    check_turn_order(turns)
    tagged = tag_media(sample, frames, LLAVA_TAGS["image"], LLAVA_TAGS["video"])
    if len(tagged.videos) > 1:
        raise ValueError("LLaVA records hold one video; sample has several")
    record: dict[str, Any] = {"id": sample["sample_id"]}
    if tagged.images:
        record["image"] = tagged.images[0] if len(tagged.images) == 1 else tagged.images
    if tagged.videos:
        record["video"] = tagged.videos[0]
    contents = [t["content"] for t in turns]
    if system == "prepend" and system_text:
        contents[0] = with_text_first(contents[0], system_text)
    record["conversations"] = [
        {"from": LLAVA_ROLES[t["role"]], "value": tagged.tag(content)} for t, content in zip(turns, contents)
    ]
    return record


@register_format("llava")
@dataclass(frozen=True)
class LlavaFormat(ConversationJsonFormat):
    system: str = "prepend"  # shards.llava_system

    @classmethod
    def from_settings(cls, settings: Any) -> LlavaFormat:
        return cls(in_context=settings.in_context, system=settings.llava_system)

    def convert(self, sample: dict, frames: Frames) -> dict:
        return to_llava(sample, frames, system=self.system)
