"""``messages`` records as LLaMA-Factory (sharegpt/openai layout) and ms-swift read them:
``{"id", "messages": [{"role", "content"}], "images": [path], "videos": [[frame path]]}``."""
from __future__ import annotations

import re
from dataclasses import dataclass

from udfs.shards.base import Frames, register_format
from udfs.shards.common import (
    ConversationJsonFormat,
    check_frames,
    check_turn_order,
    reject_text_matching,
    split_system,
    tag_media,
)

MESSAGES_TAGS = {"image": "<image>", "video": "<video>"}
# LLaMA-Factory counts <audio> too: text holding one would ask for an audio it does not have.
_MESSAGES_TAG = re.compile(r"<image>|<video>|<audio>")


def to_messages(sample: dict, frames: Frames) -> dict:
    """The ``messages`` record of a sample: each ``<media>`` becomes ``<image>`` or ``<video>``
    where it stands (``tag_media``); ``images`` lists the image paths and ``videos`` each video
    as the list of its frame paths (LLaMA-Factory's videos given as frames), both in tag order.

    The text of the leading system turns is one ``system`` message first; user and assistant
    messages alternate from a user one to an assistant one. Raises ``ValueError`` for turns that
    do not alternate and for text that already holds a media tag.
    """
    check_frames(sample, frames)
    reject_text_matching(sample["conversations"], _MESSAGES_TAG, "a media tag")
    system_text, turns = split_system(sample["conversations"])
    check_turn_order(turns)
    tagged = tag_media(sample, frames, MESSAGES_TAGS["image"], MESSAGES_TAGS["video"])
    messages = [{"role": "system", "content": system_text}] if system_text else []
    messages += [{"role": t["role"], "content": tagged.tag(t["content"])} for t in turns]
    return {"id": sample["sample_id"], "messages": messages, "images": tagged.images, "videos": tagged.videos}


@register_format("messages")
@dataclass(frozen=True)
class MessagesFormat(ConversationJsonFormat):
    def convert(self, sample: dict, frames: Frames) -> dict:
        return to_messages(sample, frames)
