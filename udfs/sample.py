"""The canonical sample: ids, media references, placeholders, and the reject signal.

Every adapter builds its rows through ``make_sample`` and ``make_media`` so that ids and
shapes agree across formats. No id names where things are (the lake root, a mount point,
local or S3): a record is named relative to its annotations root, a media item by
``media_key`` or, made by the lake, by its content (``stored_media``).
"""
from __future__ import annotations

import functools
import hashlib
import os
import posixpath
import re
import urllib.parse
from typing import Any, Collection, Iterable, Sequence

from udfs.redact import redact

# One placeholder per media item, in user turns, where the source put its tag (or, for formats
# without tags, at the start of the first user turn); the media are in placeholder order.
MEDIA_TOKEN = "<media>"
ROLES = ("system", "user", "assistant")
MEDIA_KINDS = ("video", "image", "frames_dir")
# What a record may give its media as, besides paths under media_root (``allow_remote_media``).
REMOTE_MEDIA_SCHEMES = ("s3", "https")


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


def resolve_media_path(media_root: str, path: Any, remote: Collection[str] = ()) -> str:
    """The URI of a record's media ``path``: a path relative to ``media_root``, an absolute
    path or URI inside it, or (schemes in ``remote``, a source's ``allow_remote_media``) an
    ``s3://`` or ``https://`` URI anywhere.

    Rejects what could escape the root: ``..``, a symlink resolving outside it (local roots),
    an absolute path elsewhere, a Windows drive or UNC path, a NUL byte; and URLs that could
    carry credentials into the tables (a query, user info)."""
    if not isinstance(path, str) or not path.strip():
        raise RejectError(f"media path must be a non-empty string, got {type(path).__name__}")
    if "\x00" in path:
        raise RejectError("media path contains a NUL byte")
    scheme = _SCHEME.match(path)
    if scheme:
        inside = _inside(media_root, path) if "://" in media_root else None
        return _remote_uri(path, scheme.group(1).lower(), remote) if inside is None else join_uri(media_root, inside)
    if path.startswith("\\") or (len(path) > 1 and path[1] == ":"):
        raise RejectError(f"absolute media path not allowed (a Windows drive or UNC path): {path[:200]!r}")
    if path.startswith("/"):
        inside = None if "://" in media_root else _inside_local(media_root, path)
        if inside is None:
            raise RejectError(f"absolute media path outside media_root: {path[:200]!r}")
        path = inside
    normalized = posixpath.normpath(path.replace("\\", "/"))
    if normalized == ".." or normalized.startswith("../"):
        raise RejectError(f"media path escapes media_root: {path[:200]!r}")
    uri = join_uri(media_root, normalized)
    if "://" not in media_root:
        root = _real_root(media_root)
        if os.path.commonpath([root, os.path.realpath(uri)]) != root:
            raise RejectError(f"media path escapes media_root through a symlink: {path[:200]!r}")
    return uri


_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def _inside(root: str, uri: str) -> str | None:
    """``uri`` relative to the URI ``root`` when it lies under it (after ``.`` and ``..``)."""
    root = root.rstrip("/")
    scheme, _, rest = uri.partition("://")
    normalized = f"{scheme}://{posixpath.normpath(rest)}"
    return normalized[len(root) + 1:] if normalized.startswith(root + "/") else None


def _inside_local(media_root: str, path: str) -> str | None:
    """An absolute local ``path`` relative to ``media_root`` as configured or as resolved
    (a root mounted through a symlink), or None when it lies outside both."""
    normalized = posixpath.normpath(path)
    for root in (os.path.abspath(media_root).rstrip("/"), _real_root(media_root).rstrip("/")):
        if normalized.startswith(root + "/"):
            return normalized[len(root) + 1:]
    return None


def _remote_uri(uri: str, scheme: str, remote: Collection[str]) -> str:
    """A media URI outside ``media_root``: only of a scheme the source allows."""
    shown = redact(uri)[:200]
    if scheme not in REMOTE_MEDIA_SCHEMES:
        raise RejectError(
            f"media URI scheme {scheme!r} not supported: {shown!r} (a path under media_root, or "
            f"{' or '.join(s + '://' for s in REMOTE_MEDIA_SCHEMES)} with the source's options.allow_remote_media)"
        )
    if scheme not in remote:
        raise RejectError(
            f"remote media not allowed: {shown!r} (add {scheme} to the source's options.allow_remote_media)"
        )
    parsed = urllib.parse.urlsplit(uri)
    if not parsed.netloc or parsed.path.strip("/") == "":
        raise RejectError(f"media URI has no bucket or host and path: {shown!r}")
    if parsed.query or parsed.fragment or "@" in parsed.netloc:
        raise RejectError(
            f"media URI with a query or user info not allowed (it may carry credentials, which never "
            f"enter the tables): {shown!r}"
        )
    return uri


@functools.lru_cache(maxsize=64)  # one root per source, asked once per record
def _real_root(media_root: str) -> str:
    return os.path.realpath(media_root)


def make_media(
    kind: str, uri: str, start_s: float | None = None, end_s: float | None = None, *, key: str | None = None
) -> dict:
    """One media reference; validates the clip bounds. Its ``media_id`` hashes the kind, ``key``
    and the clip: ``key`` names the media wherever it is mounted (``media_key``,
    ``stored_media``), so the same corpus gives the same ids under any media root or lake; a
    media item without one (a remote URI a record gives) is named by its URI."""
    if kind not in MEDIA_KINDS:
        raise RejectError(f"unknown media kind {kind!r}")
    start = _clip_bound(start_s, "start")
    end = _clip_bound(end_s, "end")
    if start is not None and end is not None and end <= start:
        raise RejectError(f"clip end {end} is not after start {start}")
    return {
        "media_id": stable_hash("media", kind, uri if key is None else key, start, end),
        "kind": kind,
        "uri": uri,
        "start_s": start,
        "end_s": end,
    }


def media_key(uri: str, media_root: str, dataset: str | None = None) -> str:
    """The name of the media at ``uri`` in its ids: ``<dataset>/<path under media_root>``, so
    that a dataset mounted elsewhere (another folder, S3) keeps its ids while two datasets
    whose relative paths coincide do not share them (``dataset``: the source's
    ``media_dataset``, by default media_root's last folder name). A URI outside media_root
    (remote media) is its own name."""
    root = media_root.rstrip("/") + "/"
    if not uri.startswith(root):
        return uri
    return f"{(dataset or default_media_dataset(media_root)).strip('/')}/{uri[len(root):]}"


def default_media_dataset(media_root: str) -> str:
    """The last folder name of a media root: ``webvid`` for ``/mnt/a/webvid`` and ``s3://b/webvid``."""
    return media_root.rstrip("/").rsplit("/", 1)[-1]


def media_datasets(roots: Sequence[tuple[str, str | None]]) -> list[str]:
    """The ``media_dataset`` of each source of a config, from its (media_root, media_dataset
    given or None): the given name, else the name of the outermost media root containing its
    own (given there by a source, or its last folder name) followed by the path between them.
    So sources whose roots nest (``data`` and ``data/videos``) name a file they share alike
    and give it one id."""
    given = {}
    for root, name in roots:
        if name:
            given.setdefault(root.rstrip("/"), name.strip("/"))
    datasets = []
    for root, name in roots:
        root = root.rstrip("/")
        if name:
            datasets.append(name.strip("/"))
            continue
        outer = min((r.rstrip("/") for r, _ in roots if _contains(r.rstrip("/"), root)), key=len)
        datasets.append((given.get(outer) or default_media_dataset(outer)) + root[len(outer):])
    return datasets


def _contains(root: str, other: str) -> bool:
    return other == root or other.startswith(root + "/")


def stored_media(kind: str, uri: str) -> dict:
    """A media item of an object the lake stores under a content-hash name (an inline image
    ``<sha256>.<ext>``, a folder of rendered pages named by the hash of their text and style):
    its id hashes that name, never the lake root."""
    return make_media(kind, uri, key="stored:" + uri.rstrip("/").rsplit("/", 1)[-1])


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
    notes: Iterable[dict] = (),
) -> dict:
    """A canonical sample row (see ``udfs.schemas.SAMPLES``), checked for shape.

    ``file_key`` names the file for the id (``SourceSpec.file_key``); ``source_file`` is its
    full URI, kept as lineage. ``notes`` (``schemas.NOTE``) say what was accepted with a
    change. Placeholders stand in user turns, any of them, one per media item in order."""
    roles = [t["role"] for t in conversations]
    if "user" not in roles:
        raise RejectError("conversation has no user turn")
    if "assistant" not in roles:
        raise RejectError("conversation has no assistant turn")
    placeholders = 0
    for k, t in enumerate(conversations):
        found = t["content"].count(MEDIA_TOKEN)
        if found and t["role"] != "user":
            raise RejectError(f"turn {k} ({t['role']}): media tags stand only in user turns")
        placeholders += found
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
        "notes": list(notes),
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
