"""Long text instruction records rendered as "text videos" (T2Vid's synthetic data).

Records (a JSON array or JSON lines), LongAlpaca / LongQLoRA style:
- ``{"id"?, "context": long text, "conversations": [{"from", "value"} | {"role", "content"}, ...]}``:
  the context is rendered; turn 0 keeps its own text (the question), with its single
  ``<video>`` tag as the placeholder, or the placeholder prepended when it has none;
- ``{"id"?, "conversations": [...]}`` without ``context``: turn 0's text is the long text;
- ``{"id"?, "instruction": long text, "output": answer}`` (LongAlpaca-12k's raw form): the
  instruction is the long text.
When turn 0 is itself the long text, the rendered frames replace it: the user turn is the
placeholder alone, as in T2Vid's ``longalpaca_chat_fake_vid.json``.

The pages (``udfs.text_render``) are stored in the lake as one frame folder,
``t2vid/<hash>/text_pic_<i:05d>.png`` under the lake's media root, named by the hash of the
text and the rendering settings: identical texts share one folder, and the folder does not
depend on sample ids (which split reads may renumber). The sample has one ``frames_dir``
media item and ``media_type`` "text_video"; the frames stage reads it as a video at 1 frame
per second.

Options: ``words_per_frame`` (115; CJK text: 165 characters a page for 115 words),
``width`` (448), ``height`` (448), ``font_size`` (20), ``min_font_size`` (12: a page that does
not fit shrinks down to it, and what still does not fit goes on to the next page; above
``font_size`` it is ``font_size``), ``max_pages`` (1000), ``context_key`` ("context").
Every script is drawn: Latin, Greek and Cyrillic (DejaVu Sans), Chinese, Japanese and Korean
(Noto Sans CJK), Arabic (Noto Sans Arabic, shaped right to left); a character no font has
(most emoji) is drawn as U+FFFD. A record is rejected only when its text cannot be laid out
at all (a character wider than a line at ``min_font_size``) or needs more than ``max_pages``.
"""

from __future__ import annotations

import re

from udfs.adapters import NormalizeContext, register
from udfs.adapters.base import JsonRecordsAdapter, SampleParts
from udfs.adapters.common import (
    CHAT_ROLES,
    LLAVA_ROLES,
    NO_TAGS,
    field,
    place_media,
    source_text,
    substitute_tags,
    turns_from_items,
)
from udfs.adapters.options import Option, non_empty_string, positive_int
from udfs.sample import MEDIA_TOKEN, RejectError, stable_hash, stored_media, turn
from udfs.text_render import WORDS_PER_FRAME, PageStyle, TextRenderError, render_text

MEDIA_TYPE = "text_video"
_VIDEO_TAG = re.compile(r"<video>")
_STYLE_OPTIONS = ("width", "height", "font_size")
# Pages rendered at most per record (option ``max_pages``): T2Vid keeps at most 90 frames, and
# a huge text would otherwise render and store pages for minutes.
MAX_PAGES = 1000


@register("t2vid_text")
class T2VidTextAdapter(JsonRecordsAdapter):
    options = {
        "context_key": Option("context", non_empty_string),
        "words_per_frame": Option(WORDS_PER_FRAME, positive_int),
        "width": Option(PageStyle.width, positive_int),
        "height": Option(PageStyle.height, positive_int),
        "font_size": Option(PageStyle.font_size, positive_int),
        "min_font_size": Option(PageStyle.min_font_size, positive_int),
        "max_pages": Option(MAX_PAGES, positive_int),
    }

    def parts_of(self, obj: dict, ctx: NormalizeContext) -> SampleParts:
        context_key = self.option(ctx.spec, "context_key")
        if context_key in obj:
            long_text = source_text(obj[context_key], context_key)
            turns, tags = substitute_tags(_turns(obj), _VIDEO_TAG)
            turns = place_media(turns, len(tags), 1)
        else:
            long_text, turns = _long_first_turn(obj)
        folder = self.store_pages(long_text, ctx)
        return SampleParts(media=[stored_media("frames_dir", folder)], conversations=turns, media_type=MEDIA_TYPE)

    def store_pages(self, text: str, ctx: NormalizeContext) -> str:
        """Renders ``text`` and stores its pages as one folder in the lake; returns its URI."""
        words_per_frame = self.option(ctx.spec, "words_per_frame")
        style_values = {key: self.option(ctx.spec, key) for key in _STYLE_OPTIONS}
        min_font_size = min(self.option(ctx.spec, "min_font_size"), style_values["font_size"])
        try:
            style = PageStyle(**style_values, min_font_size=min_font_size)
            pages = render_text(text, words_per_frame, style, max_pages=self.option(ctx.spec, "max_pages"))
        except TextRenderError as err:
            raise RejectError(f"long text: {err}") from None
        if ctx.put_object is None:
            raise RuntimeError("this normalize context cannot store objects")
        settings = sorted(style_values.items())
        # Named by the minimum only when it is not the one used before the option existed, so
        # that those folders keep their names.
        if min_font_size != min(PageStyle.min_font_size, style_values["font_size"]):
            settings.append(("min_font_size", min_font_size))
        folder = "t2vid/" + stable_hash("t2vid", text, words_per_frame, *settings, length=32)
        uris = [ctx.put_object(f"{folder}/text_pic_{i:05d}.png", page) for i, page in enumerate(pages)]
        return uris[0].rsplit("/", 1)[0]


def _turns(obj: dict) -> list[dict]:
    items = field(obj, "conversations", list)
    first = items[0] if items and isinstance(items[0], dict) else {}
    if "from" in first:
        return turns_from_items(obj, text_key="value", role_key="from", roles=LLAVA_ROLES)
    return turns_from_items(obj, text_key="content", role_key="role", roles=CHAT_ROLES)


def _long_first_turn(obj: dict) -> tuple[str, list[dict]]:
    """(long text, turns) when turn 0 is the long text; the frames replace it."""
    if "conversations" in obj:
        turns, _ = substitute_tags(_turns(obj), NO_TAGS)
        first_user = next((k for k, t in enumerate(turns) if t["role"] == "user"), None)
        if first_user is None:
            raise RejectError("conversation has no user turn")
        long_text = turns[first_user]["content"]
        turns[first_user] = turn("user", MEDIA_TOKEN)
        return long_text, turns
    if "instruction" in obj:
        long_text = source_text(obj["instruction"], "instruction")
        answer = source_text(field(obj, "output", str), "output")
        return long_text, [turn("user", MEDIA_TOKEN), turn("assistant", answer)]
    raise RejectError("record has no long text: expected 'context', 'conversations' or 'instruction'")
