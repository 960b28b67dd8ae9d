"""``extract_media``: one media item of the lake ("video", "image", "frames_dir"), local or
on S3, to the matching extraction."""
from __future__ import annotations

import functools
from typing import Protocol

from udfs.redact import redact
from udfs.video.decode import extract_frames
from udfs.video.frames_dir import check_inside, extract_frames_dir, image_files
from udfs.video.inputs import VideoError, input_url, is_remote
from udfs.video.results import VideoResult
from udfs.video.sampling_spec import Sampling
from udfs.video.stills import extract_image


class Storage(Protocol):
    """What ``extract_media`` needs of ``framelake.storage.Storage``."""

    def presigned_url(self, uri: str) -> str: ...
    def read_bytes(self, uri: str) -> bytes: ...
    def list(self, pattern: str) -> list[str]: ...


def _read_object(storage: Storage, uri: str) -> bytes:
    """``storage.read_bytes``, after ``input_url``'s checks for a local path: a FIFO would
    block the read forever, a folder or an empty file fail with a clear reason."""
    if not is_remote(uri):
        input_url(uri)
    return storage.read_bytes(uri)


def extract_media(
    kind: str,
    uri: str,
    storage: Storage,
    sampling: Sampling = Sampling(),
    *,
    threads: int = 0,
) -> VideoResult:
    """Dispatch on the media ``kind`` ("video", "image", "frames_dir") of a local or ``s3://``
    URI. Videos on S3 are read by ffmpeg through a presigned URL, without a local copy.
    ``threads`` caps ffmpeg's threads for videos (see ``extract_frames``)."""
    read_bytes = functools.partial(_read_object, storage)
    if kind == "image":
        return extract_image(uri, max_side=sampling.max_side, quality=sampling.quality, read_bytes=read_bytes)
    try:  # extract_* never raise: what is caught here is the store's listing or presigning
        if kind == "frames_dir":
            files = image_files(storage.list(uri))
            if not is_remote(uri):
                check_inside(uri, files)
            return extract_frames_dir(files, sampling, read_bytes=read_bytes)
        if kind == "video":
            url = storage.presigned_url(uri) if uri.startswith("s3://") else uri
            return extract_frames(url, sampling, threads=threads)
    except VideoError as err:
        return VideoResult(status="failed", error=redact(str(err)))
    except Exception as err:
        return VideoResult(status="failed", error=redact(f"storage: {type(err).__name__}: {err}"))
    return VideoResult(status="failed", error=f"unknown media kind {kind!r}")
