"""MiniCPM-V (``finetune/dataset.py``; T2Vid's training format):
``{"id", "image": path | {"<image_00>": path, ...}, "conversations": [{"role", "content"}]}``.

Multi-image records: each ``<image_NN>`` tag, in any turn, becomes a placeholder and its image
a media item, in order of appearance (a repeated tag repeats the image). A tag missing from
``image`` is an error, as in MiniCPM-V, and so is an ``image`` entry no tag uses. A single
path (or ``{"<image>": path}``) uses one ``<image>`` tag, prepended when absent.

T2Vid stores a video's frames this way; a source whose ``media_type`` is "video" labels its
samples "video" (frames as images, see ``udfs.adapters.common``).
"""

from __future__ import annotations

import re

from udfs.adapters import NormalizeContext, register
from udfs.adapters.base import JsonRecordsAdapter, SampleParts
from udfs.adapters.common import (
    CHAT_ROLES,
    NO_TAGS,
    json_type,
    media_item,
    place_media,
    substitute_tags,
    turns_from_items,
)
from udfs.sample import RejectError

_INDEXED_TAG = re.compile(r"<image_\d+>")
_SINGLE_TAG = re.compile(r"<image>")


@register("minicpmv")
class MiniCPMVAdapter(JsonRecordsAdapter):
    def parts_of(self, obj: dict, ctx: NormalizeContext) -> SampleParts:
        turns = turns_from_items(obj, text_key="content", role_key="role", roles=CHAT_ROLES)
        image = obj.get("image")
        if isinstance(image, dict) and list(image) == ["<image>"]:
            image = image["<image>"]
        if image is None:
            turns, _ = substitute_tags(turns, NO_TAGS)
            media = []
        elif isinstance(image, str):
            turns, tags = substitute_tags(turns, _SINGLE_TAG)
            turns = place_media(turns, len(tags), 1)
            media = [media_item("image", image, ctx)]
        elif isinstance(image, dict):
            turns, tags = substitute_tags(turns, _INDEXED_TAG)
            media = _tagged_images(image, tags, ctx)
        else:
            raise RejectError(f"image must be a path or an object of paths, got {json_type(image)}")
        media_type = "video" if media and ctx.spec.media_type == "video" else None
        return SampleParts(media=media, conversations=turns, media_type=media_type)


def _tagged_images(images: dict, tags: list[str], ctx: NormalizeContext) -> list[dict]:
    for tag in tags:
        if tag not in images:
            raise RejectError(f"media tag {tag} not found in image")
    unused = [name for name in images if name not in tags]
    if unused:
        raise RejectError(f"unbalanced media tags: image entry {unused[0][:60]!r} has no tag")
    return [media_item("image", images[tag], ctx) for tag in tags]
