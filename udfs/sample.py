"""The canonical sample: ids, media references, placeholders, and the reject signal.

Every adapter builds its rows through ``make_sample`` and ``make_media`` so that ids and
shapes agree across formats.
"""
from __future__ import annotations

import functools
import hashlib
import os
import posixpath
from typing import Any, Iterable

# One placeholder per media item, kept where the source put it in the first user turn.
MEDIA_TOKEN = "<media>"
ROLES = ("system", "user", "assistant")
MEDIA_KINDS = ("video", "image", "frames_dir")


class RejectError(ValueError):
    """A record cannot be normalized; the message is the reason stored in ``rejects``."""


def stable_hash(*parts: Any, length: int = 24) -> str:
    """A hex digest of the parts, stable across processes and reruns."""
    text = "\x1f".join(["" if p is None else str(p) for p in parts])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def sample_id(source: str, file_key: str, record_key: Any) -> str:
    """Stable id of a record: a hash of source name, file and the record's identity in it."""
    return stable_hash("sample", source, file_key, record_key, length=32)


def join_uri(root: str, relative: str) -> str:
    """``root`` joined with a relative path, for local paths and ``s3://`` URIs alike."""
    return root.rstrip("/") + "/" + relative.lstrip("/")


def resolve_media_path(media_root: str, path: Any) -> str:
    """The URI of ``path`` under ``media_root``; rejects paths that could escape the root:
    absolute, through ``..``, or (local roots) through a symlink resolving outside it."""
    if not isinstance(path, str) or not path.strip():
        raise RejectError(f"media path must be a non-empty string, got {type(path).__name__}")
    if "\x00" in path:
        raise RejectError("media path contains a NUL byte")
    if path.startswith(("/", "\\")) or "://" in path or (len(path) > 1 and path[1] == ":"):
        raise RejectError(f"absolute media path not allowed: {path[:200]!r}")
    normalized = posixpath.normpath(path.replace("\\", "/"))
    if normalized == ".." or normalized.startswith("../"):
        raise RejectError(f"media path escapes media_root: {path[:200]!r}")
    uri = join_uri(media_root, normalized)
    if "://" not in media_root:
        root = _real_root(media_root)
        if os.path.commonpath([root, os.path.realpath(uri)]) != root:
            raise RejectError(f"media path escapes media_root through a symlink: {path[:200]!r}")
    return uri


@functools.lru_cache(maxsize=64)  # one root per source, asked once per record
def _real_root(media_root: str) -> str:
    return os.path.realpath(media_root)


def make_media(kind: str, uri: str, start_s: float | None = None, end_s: float | None = None) -> dict:
    """One media reference; validates the clip bounds."""
    if kind not in MEDIA_KINDS:
        raise RejectError(f"unknown media kind {kind!r}")
    start = _clip_bound(start_s, "start")
    end = _clip_bound(end_s, "end")
    if start is not None and end is not None and end <= start:
        raise RejectError(f"clip end {end} is not after start {start}")
    return {
        "media_id": stable_hash("media", kind, uri, start, end),
        "kind": kind,
        "uri": uri,
        "start_s": start,
        "end_s": end,
    }


def _clip_bound(value: Any, name: str) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise RejectError(f"clip {name} must be a number, got bool")
    try:
        bound = float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an integer past float's range
        raise RejectError(f"clip {name} must be a number, got {str(value)[:80]!r}") from None
    if not bound >= 0 or bound == float("inf"):
        raise RejectError(f"clip {name} must be a finite number >= 0, got {value!r:.80}")
    return bound


def turn(role: str, content: Any) -> dict:
    if role not in ROLES:
        raise RejectError(f"unknown role {role!r}")
    if not isinstance(content, str):
        raise RejectError(f"{role} turn content must be a string, got {type(content).__name__}")
    return {"role": role, "content": content}


def make_sample(
    *,
    source: str,
    fmt: str,
    source_file: str,
    file_key: str,
    record_index: int,
    record_key: Any,
    media: list[dict],
    conversations: list[dict],
    raw: str,
    media_type: str | None = None,
    in_context: Iterable[dict] = (),
    language: str | None = None,
) -> dict:
    """A canonical sample row (see ``udfs.schemas.SAMPLES``), checked for shape.

    ``file_key`` names the file for the id (``SourceSpec.file_key``); ``source_file`` is its
    full URI, kept as lineage."""
    roles = [t["role"] for t in conversations]
    if "user" not in roles:
        raise RejectError("conversation has no user turn")
    if "assistant" not in roles:
        raise RejectError("conversation has no assistant turn")
    placeholders = conversations[roles.index("user")]["content"].count(MEDIA_TOKEN)
    total_placeholders = sum(t["content"].count(MEDIA_TOKEN) for t in conversations)
    if total_placeholders != placeholders:
        raise RejectError("media placeholders outside the first user turn")
    if placeholders != len(media):
        raise RejectError(f"{placeholders} media placeholders for {len(media)} media items")
    if media_type is None:
        media_type = infer_media_type(media)
    return {
        "sample_id": sample_id(source, file_key, record_key),
        "source": source,
        "format": fmt,
        "media_type": media_type,
        "media": media,
        "conversations": conversations,
        "in_context": list(in_context),
        "language": language,
        "source_file": source_file,
        "record_index": record_index,
        "raw": raw,
    }


def infer_media_type(media: list[dict]) -> str:
    if not media:
        return "text"
    if all(m["kind"] == "image" for m in media):
        return "images"
    return "video"
