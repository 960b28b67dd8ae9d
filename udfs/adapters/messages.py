"""LLaMA-Factory's (and ms-swift's) multimodal records (hiyouga/LLaMA-Factory,
``data/mllm_demo.json``, ``data/mllm_video_demo.json``; ``src/llamafactory/data/converter.py``):
``{"messages": [{"role", "content"}], "images": [paths], "videos": [paths], "system"?}``.

Roles are "user", "assistant" and "system" (a leading system message, or the record's
``system``, not both). ``<image>`` and ``<video>`` tags stand in any user turn, one per item,
the k-th tag of a kind taking the k-th item of its list (LLaMA-Factory's ``mm_plugin`` checks
the counts match). A record with media and no tag at all gets every placeholder prepended to
its first user turn, videos then images, as LLaMA-Factory's chat engines prepend them. A
``videos`` entry that is itself a list is one video given as frames (LLaMA-Factory's
"processed video frames"): one ``image`` item per frame, ``media_type`` "video".
"""

from __future__ import annotations

from udfs.adapters import NormalizeContext, register
from udfs.adapters.base import JsonRecordsAdapter, SampleParts
from udfs.adapters.common import (
    CHAT_ROLES,
    json_type,
    media_item,
    place_tagged_media,
    source_text,
    substitute_tags,
    system_turns,
    turns_from_items,
    video_kind,
)
from udfs.adapters.llava import LLAVA_TAG, image_groups
from udfs.sample import RejectError


@register("messages")
class MessagesAdapter(JsonRecordsAdapter):
    def parts_of(self, obj: dict, ctx: NormalizeContext) -> SampleParts:
        turns = turns_from_items(obj, "messages", text_key="content", role_key="role", roles=CHAT_ROLES)
        if "system" in obj:
            system = system_turns(source_text(obj["system"], "system"))
            if system and turns and turns[0]["role"] == "system":
                raise RejectError("record has both 'system' and a system message")
            turns = system + turns
        turns, tags = substitute_tags(turns, LLAVA_TAG)  # LLaMA-Factory takes the tags LLaVA does
        videos = _video_groups(obj.get("videos"), ctx)
        groups = {"video": videos, "image": image_groups(obj.get("images"), "images", ctx)}
        turns, media = place_tagged_media(turns, tags, groups, untagged="all")
        as_frames = any(len(group) > 1 or group[0]["kind"] == "image" for group in videos)
        return SampleParts(media=media, conversations=turns, media_type="video" if as_frames else None)


def _video_groups(paths, ctx: NormalizeContext) -> list[list[dict]]:
    """The media of each ``<video>`` tag: a video file or frames folder, or a list of frames."""
    if paths is None:
        return []
    videos = paths if isinstance(paths, list) else [paths]
    groups = []
    for k, video in enumerate(videos):
        if isinstance(video, list):
            if not video:
                raise RejectError(f"videos[{k}] is an empty array")
            groups.append([media_item("image", frame, ctx) for frame in video])
        elif isinstance(video, str):
            groups.append([media_item(video_kind(video), video, ctx)])
        else:
            raise RejectError(f"videos[{k}] must be a path or an array of frame paths, got {json_type(video)}")
    return groups
