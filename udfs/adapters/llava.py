"""LLaVA style: ``{"id", "image"|"video": path or [paths], "conversations": [{"from", "value"}]}``,
as LLaVA, lmms-finetune (zjysteven/lmms-finetune, ``docs/dataset.md``) and VideoLLaMA3 publish it.

``from`` is "human", "gpt" or "system"; lmms-finetune's ``system_prompt`` key is the system
turn. ``<image>`` and ``<video>`` tags, in any user turn, become placeholders in place; the
media are in tag order, so a record may have both ``video`` and ``image`` (lmms-finetune),
the k-th ``<video>`` tag taking the k-th video and the k-th ``<image>`` the k-th image. There
must be one tag per image and per video, except that a record with one media item and no tag
gets the placeholder prepended to its first user turn (LLaVA's convention).

Media:
- ``image``: a path or a list of paths, one image item each (one tag each);
- ``video``: a path, a video file or, without extension, a frames folder (one tag);
- ``video`` as a list: of video files (or folders), several videos, one tag each
  (lmms-finetune's ``["bm_teaser.mp4", "bm_show.mp4"]``, VideoLLaMA3's one-element
  ``["videos/xxx.mp4"]``); of frame images, one video given as frames: one ``image`` item
  per frame, ``media_type`` "video", and its single tag stands for one placeholder per frame
  (joined by newlines). The list's entries decide, since both layouts are published; a list
  mixing the two is rejected. Writing LLaVA back, a "video" sample whose media are all images
  is a ``video`` list and its run of placeholders one ``<video>`` tag.
"""

from __future__ import annotations

import re

from udfs.adapters import NormalizeContext, register
from udfs.adapters.base import JsonRecordsAdapter, SampleParts
from udfs.adapters.common import (
    LLAVA_ROLES,
    VIDEO_EXTENSIONS,
    extension,
    json_type,
    media_item,
    place_tagged_media,
    source_text,
    substitute_tags,
    system_turns,
    turns_from_items,
    video_kind,
)
from udfs.sample import RejectError

LLAVA_TAG = re.compile(r"<image>|<video>")


@register("llava")
class LlavaAdapter(JsonRecordsAdapter):
    def parts_of(self, obj: dict, ctx: NormalizeContext) -> SampleParts:
        turns = turns_from_items(obj, text_key="value", role_key="from", roles=LLAVA_ROLES)
        turns, tags = substitute_tags(with_system_prompt(obj, turns), LLAVA_TAG)
        videos, as_frames = video_groups(obj.get("video"), ctx)
        groups = {"video": videos, "image": image_groups(obj.get("image"), "image", ctx)}
        turns, media = place_tagged_media(turns, tags, groups, untagged="one")
        return SampleParts(media=media, conversations=turns, media_type="video" if as_frames else None)


def with_system_prompt(obj: dict, turns: list[dict]) -> list[dict]:
    """``turns`` after the record's ``system_prompt`` (lmms-finetune) as the system turn."""
    if "system_prompt" not in obj:
        return turns
    system = system_turns(source_text(obj["system_prompt"], "system_prompt"))
    if system and turns and turns[0]["role"] == "system":
        raise RejectError("record has both 'system_prompt' and a system turn")
    return system + turns


def image_groups(paths, key: str, ctx: NormalizeContext) -> list[list[dict]]:
    """One image item per path of ``obj[key]`` (a path or a list of paths), each its own tag."""
    if paths is None:
        return []
    if not isinstance(paths, list):
        return [[media_item("image", paths, ctx)]]
    if not paths:
        raise RejectError(f"{key} is an empty array")
    return [[media_item("image", path, ctx)] for path in paths]


def video_groups(paths, ctx: NormalizeContext) -> tuple[list[list[dict]], bool]:
    """The media of each ``<video>`` tag, and whether the video is given as frames."""
    if paths is None:
        return [], False
    if not isinstance(paths, list):
        return [[media_item(video_kind(paths), paths, ctx)]], False
    if not paths:
        raise RejectError("video is an empty array")
    frames = [path for path in paths if not _is_video(path)]
    if not frames:
        return [[media_item(video_kind(path), path, ctx)] for path in paths], False
    if len(frames) != len(paths):
        raise RejectError("video list mixes video files and frame images")
    return [[media_item("image", path, ctx) for path in paths]], True


def _is_video(path) -> bool:
    """A video file, or a frames folder (no extension); anything else in a list is a frame."""
    if not isinstance(path, str):
        raise RejectError(f"video path must be a string, got {json_type(path)}")
    return extension(path) in VIDEO_EXTENSIONS or not extension(path)
