"""Compressed annotation files: gzip (``.gz``: ``.json.gz``, ``.jsonl.gz``) and Zstandard
(``.zst``: ``.json.zst``, ``.jsonl.zst``), streamed decompressed, local or on S3.

The file name's last extension says the compression; the format inside is the one the name
without it says (or the content, for readers that look). Data that is not what the name says,
or that breaks off, raises ``CorruptCompressedFile``: an ``OSError``, so the normalize loop
turns it into one reject row with the reason (records read before it stay samples), never a
reject per garbage line. A compressed stream has no byte offsets to start a split at: such
files are always read whole (``Adapter.can_split``).
"""
from __future__ import annotations

import contextlib
import gzip
import io
import posixpath
import zlib
from typing import BinaryIO, Callable

import zstandard

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
_MAGIC = {"gzip": b"\x1f\x8b", "zstd": b"\x28\xb5\x2f\xfd"}
_READ_SIZE = 1 << 20


class CorruptCompressedFile(OSError):
    """A compressed annotation file that cannot be decompressed to its end."""


def compression_of(uri: str) -> str | None:
    """"gzip", "zstd" or None, from the file name."""
    return COMPRESSIONS.get(posixpath.splitext(uri)[1].lower())


def without_compression(name: str) -> str:
    """The file name without its compression extension (``DC_instructions.json.gz`` ->
    ``DC_instructions.json``)."""
    return name[: -len(posixpath.splitext(name)[1])] if compression_of(name) else name


def open_annotation(open_binary: Callable[..., BinaryIO], uri: str) -> BinaryIO:
    """``uri`` opened with ``open_binary`` and, when its name says so, decompressed."""
    compression = compression_of(uri)
    stream = open_binary(uri)
    if compression is None:
        return stream
    return _Decompressed(stream, compression, posixpath.basename(uri))


class _Decompressed(io.RawIOBase):
    """The decompressed bytes of a compressed stream, read on demand. Unbuffered: a read gives
    what is decompressed so far, so the records before a break are read before it raises."""

    def __init__(self, stream: BinaryIO, compression: str, name: str):
        self._stream = stream
        self._compression = compression
        self._name = name
        self._pending = b""
        self._started = False  # the first bytes were checked
        self._done = False
        self._gzip = gzip.GzipFile(fileobj=stream, mode="rb") if compression == "gzip" else None
        self._zstd = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._pending and not self._done:
            try:
                self._pending = self._next_chunk()
            except (EOFError, gzip.BadGzipFile, zlib.error, zstandard.ZstdError) as exc:
                raise CorruptCompressedFile(f"{self._name}: corrupt {self._compression} data: {exc}") from None
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size

    def _next_chunk(self) -> bytes:
        if self._gzip is not None:
            chunk = self._gzip.read1(_READ_SIZE)
            self._done = not chunk
            return chunk
        return self._next_zstd_chunk()

    def _next_zstd_chunk(self) -> bytes:
        """Decompressed bytes of the frames read so far (``zstd`` joins one frame per input);
        a stream that ends inside a frame is truncated."""
        while True:
            data = self._stream.read(_READ_SIZE)
            if not data:
                if self._zstd is not None:
                    raise zstandard.ZstdError("the data ends inside a frame: file truncated?")
                self._done = True
                return b""
            if not self._started:
                self._started = True
                if not data.startswith(_MAGIC["zstd"]):
                    raise zstandard.ZstdError("not Zstandard data")
            out = b""
            while data:
                if self._zstd is None:
                    self._zstd = zstandard.ZstdDecompressor().decompressobj()
                out += self._zstd.decompress(data)
                data = b""
                if self._zstd.eof:
                    data, self._zstd = self._zstd.unused_data, None
            if out:
                return out

    def close(self) -> None:
        if not self.closed:
            try:
                if self._gzip is not None:
                    self._gzip.close()
            finally:
                self._stream.close()
        super().close()


def checked_compression(open_binary: Callable[..., BinaryIO], uri: str) -> str | None:
    """The compression ``uri``'s name says, after checking its first bytes are that
    compression's; raises ``CorruptCompressedFile`` when they are not."""
    compression = compression_of(uri)
    if compression is not None:
        with contextlib.closing(open_binary(uri)) as stream:
            head = stream.read(len(_MAGIC[compression]))
        if head != _MAGIC[compression]:
            raise CorruptCompressedFile(f"{posixpath.basename(uri)}: named {compression} but is not {compression} data")
    return compression


def file_description(layout: str, compression: str | None) -> str:
    """How ``framelake validate`` tells what a file is: "JSON lines, gzip"."""
    return f"{layout}, {compression}" if compression else layout
