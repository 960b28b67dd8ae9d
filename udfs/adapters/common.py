"""Helpers shared by the adapters: record fields, turns, media tags, media items, inline images.

Every helper raises ``RejectError`` with a reason naming the offending field, so adapters stay
short declarations of where each part of their format lives.

Conventions all adapters follow:
- Media tags of the source (``<image>``, ``<video>``, ``<image_00>``) become ``MEDIA_TOKEN``
  in place, in whichever user turn they stand. A tag the format does not define is rejected,
  and so is source text that already contains ``MEDIA_TOKEN`` (it would be miscounted as a
  placeholder).
- A format without tags gets one placeholder per media item, each on its own line, at the
  start of the first user turn.
- One video given as its frame images is represented as one ``image`` media item per frame
  with ``media_type`` "video" and one placeholder per frame.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
from typing import Any, Mapping

from udfs.adapters import NormalizeContext
from udfs.adapters.options import source_option
from udfs.sample import MEDIA_TOKEN, RejectError, make_media, media_key, resolve_media_path, stored_media, turn

MEDIA_TAG = re.compile(r"<(?:image|video)(?:_\d+)?>")
NO_TAGS = re.compile(r"(?!)")  # accepts no tag: any tag in the text is rejected
LLAVA_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
CHAT_ROLES = {"user": "user", "assistant": "assistant", "system": "system"}
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".gif", ".flv", ".mpg", ".mpeg", ".wmv", ".3gp", ".ts"}
)

_JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
_PLACEHOLDER = re.compile(re.escape(MEDIA_TOKEN))
_WHITESPACE = re.compile(r"\s+")


def json_type(value: Any) -> str:
    """How JSON calls the type of a parsed value, for reasons."""
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def require_object(value: Any, where: str = "record") -> dict:
    if not isinstance(value, dict):
        raise RejectError(f"{where} must be an object, got {json_type(value)}")
    return value


def required(obj: dict, key: str, where: str = "") -> Any:
    """``obj[key]``; rejects when the key is missing."""
    if key not in obj:
        raise RejectError(f"missing key {_path(where, key)!r}")
    return obj[key]


def field(obj: dict, key: str, expected: type, where: str = "") -> Any:
    """``obj[key]``, which must be present and of JSON type ``expected`` (str, list or dict)."""
    value = required(obj, key, where)
    if not isinstance(value, expected):
        raise RejectError(f"{_path(where, key)} must be {_JSON_TYPES[expected]}, got {json_type(value)}")
    return value


def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def own_id(obj: dict) -> str | int | None:
    """The record's own ``id`` when it is a usable key, else None (the index is used)."""
    value = obj.get("id")
    if (isinstance(value, str) and value) or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    return None


def record_language(obj: dict) -> str | None:
    """The language a record declares (``language`` or ``lang``), if any."""
    for key in ("language", "lang"):
        value = obj.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def source_text(value: Any, where: str, *, tags: bool = False) -> str:
    """A text of the source; with ``tags`` False it must not contain media tags."""
    if not isinstance(value, str):
        raise RejectError(f"{where} must be a string, got {json_type(value)}")
    if MEDIA_TOKEN in value:
        raise RejectError(f"{where} contains the reserved placeholder {MEDIA_TOKEN!r}")
    if not tags and (tag := MEDIA_TAG.search(value)):
        raise RejectError(f"unexpected media tag {tag.group()} in {where}")
    return value


def system_turns(text: str) -> list[dict]:
    """A system turn, or none when the text is blank."""
    return [turn("system", text)] if text.strip() else []


def with_media_prefix(text: str, n_media: int) -> str:
    """``text`` after ``n_media`` placeholders, one per line."""
    placeholders = "\n".join([MEDIA_TOKEN] * n_media)
    if not placeholders:
        return text
    return f"{placeholders}\n{text}" if text else placeholders


def turns_from_items(
    obj: dict,
    key: str = "conversations",
    *,
    text_key: str,
    role_key: str | None = None,
    roles: Mapping[str, str] | None = None,
) -> list[dict]:
    """The turns of ``obj[key]``, a list of objects holding a role and a text.

    Without ``roles`` the role comes from the position (even = user, odd = assistant). Blank
    system turns are dropped. Media tags are kept for ``substitute_tags``.
    """
    items = field(obj, key, list)
    if not items:
        raise RejectError(f"{key} is empty")
    turns = []
    for k, item in enumerate(items):
        where = f"{key}[{k}]"
        item = require_object(item, where)
        text = source_text(required(item, text_key, where), f"{where}.{text_key}", tags=True)
        if roles is None:
            role = "user" if k % 2 == 0 else "assistant"
        else:
            name = required(item, role_key, where)
            role = roles.get(name) if isinstance(name, str) else None
            if role is None:
                raise RejectError(f"{where}.{role_key}: unknown role {name!r:.60}")
        if role != "system" or text.strip():
            turns.append(turn(role, text))
    return turns


def substitute_tags(turns: list[dict], accepted: re.Pattern) -> tuple[list[dict], list[str]]:
    """Turns with each ``accepted`` media tag replaced by ``MEDIA_TOKEN``, and the tags in order
    of appearance; any other media tag is rejected."""
    found: list[str] = []

    def replace(match: re.Match) -> str:
        tag = match.group()
        if not accepted.fullmatch(tag):
            raise RejectError(f"unexpected media tag {tag}")
        found.append(tag)
        return MEDIA_TOKEN

    substituted = [turn(t["role"], MEDIA_TAG.sub(replace, t["content"])) for t in turns]
    return substituted, found


def place_media(turns: list[dict], n_tags: int, n_media: int) -> list[dict]:
    """Checks tags against media; one media without a tag gets a placeholder prepended to the
    first user turn (the LLaVA convention)."""
    if n_tags == n_media:
        return turns
    if n_tags == 0 and n_media == 1:
        first_user = next((k for k, t in enumerate(turns) if t["role"] == "user"), None)
        if first_user is not None:
            placed = list(turns)
            placed[first_user] = turn("user", with_media_prefix(turns[first_user]["content"], 1))
            return placed
    raise RejectError(f"unbalanced media tags: {n_tags} tags for {n_media} media")


def place_tagged_media(
    turns: list[dict], tags: list[str], groups: Mapping[str, list[list[dict]]], *, untagged: str
) -> tuple[list[dict], list[dict]]:
    """Turns and media in tag order, for formats with ``<image>`` and ``<video>`` tags in any
    user turn (``turns`` and ``tags`` from ``substitute_tags``).

    ``groups`` maps a tag kind ("image", "video") to the media of each of its tags, in order:
    one item, or one image per frame for a video given as frames, whose placeholder becomes
    one per frame. The k-th tag of a kind takes the k-th group of that kind. A record without
    any tag gets its placeholders prepended to the first user turn, kinds in the order of
    ``groups``: with ``untagged`` "one" only when it has a single group (LLaVA's convention),
    with "all" always (LLaMA-Factory's)."""
    tag_kinds = [tag[1:-1] for tag in tags]
    ordered = [kind for kind, kind_groups in groups.items() for _ in kind_groups]
    if not tag_kinds and ordered and (untagged == "all" or len(ordered) == 1):
        first_user = next((k for k, t in enumerate(turns) if t["role"] == "user"), None)
        if first_user is not None:
            turns = list(turns)
            turns[first_user] = turn("user", with_media_prefix(turns[first_user]["content"], len(ordered)))
            tag_kinds = ordered
    kinds = sorted({*tag_kinds, *(kind for kind, kind_groups in groups.items() if kind_groups)})
    for kind in kinds:
        n_tags, n_groups = tag_kinds.count(kind), len(groups.get(kind, []))
        if n_tags != n_groups:
            which = "" if len(kinds) == 1 else f" <{kind}>"
            raise RejectError(f"unbalanced media tags: {n_tags}{which} tags for {n_groups} media")
    taken = {kind: iter(kind_groups) for kind, kind_groups in groups.items()}
    placed = [next(taken[kind]) for kind in tag_kinds]
    return expand_placeholders(turns, [len(group) for group in placed]), [item for group in placed for item in group]


def expand_placeholders(turns: list[dict], counts: list[int]) -> list[dict]:
    """Turns with their k-th placeholder standing for ``counts[k]`` ones, joined by newlines
    (a video given as frames: one tag, one placeholder per frame)."""
    remaining = iter(counts)
    expand = lambda _: "\n".join([MEDIA_TOKEN] * next(remaining))  # noqa: E731
    return [turn(t["role"], _PLACEHOLDER.sub(expand, t["content"])) for t in turns]


def check_conversation(turns: list[dict]) -> None:
    """An optional system turn, then user/assistant turns alternating, starting with the user,
    ending with the assistant; no empty user or assistant turn."""
    first = 1 if turns and turns[0]["role"] == "system" else 0
    body = turns[first:]
    for k, t in enumerate(body):
        expected = "user" if k % 2 == 0 else "assistant"
        if t["role"] != expected:
            raise RejectError(f"turn {first + k}: expected a {expected} turn, got a {t['role']} turn")
        if not t["content"].strip():
            raise RejectError(f"turn {first + k}: empty {expected} turn")
    if not body or body[-1]["role"] != "assistant":
        raise RejectError("conversation does not end with an assistant turn")


def extension(path: str) -> str:
    """The lower-case file extension of ``path`` ("" for a folder or no extension)."""
    if path.endswith("/"):
        return ""
    return posixpath.splitext(posixpath.basename(path))[1].lower()


def video_kind(path: Any) -> str:
    """A video path is a file ffmpeg decodes, or a folder of frames when it has no extension."""
    if not isinstance(path, str):
        raise RejectError(f"media path must be a string, got {json_type(path)}")
    return "video" if extension(path) else "frames_dir"


def media_item(kind: str, path: Any, ctx: NormalizeContext, start_s: Any = None, end_s: Any = None) -> dict:
    """A media reference to ``path`` under the source's media root (or, where the source's
    ``allow_remote_media`` allows, an ``s3://`` or ``https://`` URI)."""
    uri = resolve_media_path(ctx.spec.media_root, path, source_option(ctx.spec.options, "allow_remote_media"))
    if kind == "frames_dir" and uri.startswith("https://"):
        raise RejectError(f"a frames folder cannot be read over https (it cannot be listed): {uri[:200]!r}")
    key = media_key(uri, ctx.spec.media_root, source_option(ctx.spec.options, "media_dataset"))
    return make_media(kind, uri, start_s, end_s, key=key)


def inline_image(encoded: Any, where: str, ctx: NormalizeContext) -> dict:
    """A base64 image stored into the lake, as an image media item."""
    data, ext = decode_base64_image(encoded, where)
    return stored_media("image", ctx.put_inline(data, ext))


def decode_base64_image(encoded: Any, where: str) -> tuple[bytes, str]:
    """The bytes and file extension of a base64 image (URL-safe or standard alphabet, padding
    optional, ``data:`` URLs accepted)."""
    if not isinstance(encoded, str) or not encoded:
        raise RejectError(f"{where} must be a non-empty base64 string, got {json_type(encoded)}")
    if encoded.startswith("data:"):
        encoded = encoded.partition(",")[2]
    compact = _WHITESPACE.sub("", encoded).translate(_URLSAFE_TO_STANDARD)
    try:
        data = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RejectError(f"{where}: invalid base64") from None
    ext = image_extension(data)
    if ext is None:
        raise RejectError(f"{where}: not a JPEG, PNG, GIF, WebP or BMP image")
    return data, ext


def image_extension(data: bytes) -> str | None:
    """The file extension of encoded image bytes, from their signature."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM"):
        return "bmp"
    return None
