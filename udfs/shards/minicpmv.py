"""MiniCPM-V's multi-image JSON records (T2Vid's training format)."""
from __future__ import annotations

import re

from udfs.shards.base import Frames, register_format
from udfs.shards.common import JsonShardFormat, check_frames, reject_text_matching, split_system, without_placeholders

# MiniCPM-V's finetune code splits every content on this pattern and looks each match up in "image".
MINICPMV_TAG = re.compile(r"<image_\d+>")


def to_minicpmv(sample: dict, frames: Frames) -> dict:
    """The MiniCPM-V multi-image record (T2Vid's training format) of a sample.

    Every frame of every media item, in media order then frame order, gets a tag
    ``<image_NN>`` (two digits, wider for 100 frames or more, the same width for all tags).
    As T2Vid's converter does, the ``<media>`` placeholders leave the first user turn and the
    tags are prepended to it, joined by "\\n". MiniCPM-V's format has no system role: the text of
    the leading system turns goes into the first user turn, after the tags and before the user
    text. Raises ``ValueError`` for a sample without media (the finetune code needs an image),
    for a system turn after the conversation started, and for text that already contains an
    ``<image_N>`` tag (MiniCPM-V would take it for an image).
    """
    check_frames(sample, frames)
    if not sample["media"]:
        raise ValueError("MiniCPM-V records need at least one image; sample has no media")
    reject_text_matching(sample["conversations"], MINICPMV_TAG, "a MiniCPM-V image tag")
    paths = [frame["path"] for item_frames in frames for frame in item_frames]
    width = max(2, len(str(len(paths) - 1)))
    tags = [f"<image_{i:0{width}d}>" for i in range(len(paths))]
    system_text, turns = split_system(sample["conversations"])
    first_user = "\n".join(part for part in (*tags, system_text, without_placeholders(turns[0]["content"])) if part)
    conversations = [{"role": "user", "content": first_user}]
    conversations += [{"role": t["role"], "content": t["content"]} for t in turns[1:]]
    return {"id": sample["sample_id"], "image": dict(zip(tags, paths)), "conversations": conversations}


@register_format("minicpmv")
class MiniCpmvFormat(JsonShardFormat):
    def record(self, sample: dict, frames: Frames) -> dict:
        return to_minicpmv(sample, frames)
