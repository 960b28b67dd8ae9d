"""``file``: queries from a plain JSON array or JSON-lines file of ``{id, media, annotations}``.

``media`` is a path under ``media_root`` (default: the file's folder; relative local paths
are taken from the current directory), or a list of paths or of
``{path, start, end}`` clips; images by their extension, folders without one as frame folders.
``annotations`` is any JSON value the template renders. A record that is not such an object
becomes a query with a problem, so it is counted as a reject.
"""
from __future__ import annotations

import os
from typing import Any, BinaryIO, Callable, Iterator

from udfs.adapters.common import extension, video_kind
from udfs.adapters.options import Option, non_empty_string
from udfs.adapters.readers import read_records
from udfs.generate.loaders import Query, QueryLoader, register_loader
from udfs.sample import RejectError, make_media, resolve_media_path

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@register_loader("file")
class FileLoader(QueryLoader):
    options = {"path": Option(None, non_empty_string), "media_root": Option(None, non_empty_string)}

    def check_options(self, given: dict) -> list[str]:
        return super().check_options(given) + ([] if given.get("path") else ["path: required"])

    def load(self, options: dict, open_binary: Callable[[str], BinaryIO]) -> Iterator[Query]:
        path = options["path"]
        media_root = self.option(options, "media_root") or os.path.dirname(path) or "."
        if "://" not in media_root:  # media URIs name where the driver found them, as the config's do
            media_root = os.path.abspath(media_root)
        with open_binary(path) as stream:
            for record in read_records(stream):
                fallback = f"record-{record.index}"
                if record.error is not None:
                    yield Query(fallback, problem=f"query record {record.index}: {record.error}")
                    continue
                try:
                    yield query_of(record.value, media_root)
                except RejectError as err:
                    yield Query(fallback, problem=f"query record {record.index}: {err}")


def query_of(value: Any, media_root: str) -> Query:
    if not isinstance(value, dict):
        raise RejectError(f"must be an object, got {type(value).__name__}")
    query_id = value.get("id")
    if not isinstance(query_id, (str, int)) or isinstance(query_id, bool) or query_id == "":
        raise RejectError("id: must be a non-empty string or an integer")
    media = value.get("media") or []
    items = media if isinstance(media, list) else [media]
    return Query(str(query_id), [media_of(item, media_root) for item in items], value.get("annotations"))


def media_of(item: Any, media_root: str) -> dict:
    clip = item if isinstance(item, dict) else {"path": item}
    path = clip.get("path")
    uri = resolve_media_path(media_root, path)
    kind = "image" if extension(path) in IMAGE_EXTENSIONS else video_kind(path)
    return make_media(kind, uri, clip.get("start"), clip.get("end"))
