"""MiniCPM-V's multi-image JSON records (T2Vid's training format)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from udfs.sample import MEDIA_TOKEN
from udfs.shards.base import Frames, register_format
from udfs.shards.common import (
    ConversationJsonFormat,
    check_frames,
    check_turn_order,
    leading_placeholders,
    reject_text_matching,
    split_system,
)

# MiniCPM-V's finetune code splits every content on this pattern and looks each match up in "image".
MINICPMV_TAG = re.compile(r"<image_\d+>")


def to_minicpmv(sample: dict, frames: Frames) -> dict:
    """The MiniCPM-V multi-image record (T2Vid's training format) of a sample.

    Every frame of every media item, in media order then frame order, gets a tag
    ``<image_NN>`` (two digits, wider for 100 frames or more, the same width for all tags).
    Each ``<media>`` placeholder becomes its item's frame tags joined by "\\n", where it stands;
    the placeholders that open a turn become, as in T2Vid's converter, its first lines, its text
    on the next line. MiniCPM-V's format has no system role: the text of the leading system
    turns goes into the first user turn, after its opening tags and before its text. Raises
    ``ValueError`` for a sample without media (the finetune code needs an image), turns that do
    not alternate user/assistant, and text that already contains an ``<image_N>`` tag
    (MiniCPM-V would take it for an image).
    """
    check_frames(sample, frames)
    if not sample["media"]:
        raise ValueError("MiniCPM-V records need at least one image; sample has no media")
    reject_text_matching(sample["conversations"], MINICPMV_TAG, "a MiniCPM-V image tag")
    system_text, turns = split_system(sample["conversations"])
    check_turn_order(turns)
    paths = [frame["path"] for item_frames in frames for frame in item_frames]
    width = max(2, len(str(len(paths) - 1)))
    tags = iter(f"<image_{i:0{width}d}>" for i in range(len(paths)))
    item_tags = iter(["\n".join(next(tags) for _ in item_frames) for item_frames in frames])
    conversations = []
    for number, turn in enumerate(turns):
        opening, rest = leading_placeholders(turn["content"])
        lines = [next(item_tags) for _ in range(opening)]
        lines += [system_text] if number == 0 else []
        lines.append(re.sub(re.escape(MEDIA_TOKEN), lambda _: next(item_tags), rest))
        conversations.append({"role": turn["role"], "content": "\n".join(line for line in lines if line)})
    image = {f"<image_{i:0{width}d}>": path for i, path in enumerate(paths)}
    return {"id": sample["sample_id"], "image": image, "conversations": conversations}


@register_format("minicpmv")
@dataclass(frozen=True)
class MiniCpmvFormat(ConversationJsonFormat):
    def convert(self, sample: dict, frames: Frames) -> dict:
        return to_minicpmv(sample, frames)
