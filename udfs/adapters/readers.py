"""Streaming readers of JSON annotation files, yielding one ``RawRecord`` per record.

Files can be many GB, so nothing here loads a whole file: text is decoded chunk by chunk and
each element is parsed with ``json.JSONDecoder.raw_decode`` as soon as it is complete. The
readers never raise on bad content: a malformed element becomes a record with ``error`` set
and reading resumes after it. When the structure itself is lost (an unterminated string, an
unbalanced bracket) one final error record covers the rest of the file.

Text is UTF-8 (a BOM is skipped). Invalid UTF-8 only spoils the records that contain it.

One module, past 400 lines: the whole-file readers, the boundary scan and the split readers
share one incremental JSON state machine, which splitting would spread over modules.

Big files are read in splits (``scan_splits``, ``read_split``): a scan of the file finds record
boundaries every few MiB, and each split is then read on its own from its byte offset, with
the records' indexes in the whole file. The scan runs the very readers below on the file's
bytes (decoded as Latin-1, one character per byte, so positions are byte offsets): JSON's
structure is ASCII, so it finds exactly the records the UTF-8 reading finds.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from itertools import islice
from typing import Any, BinaryIO, Generator, Iterator

from udfs.adapters import RawRecord

CHUNK_SIZE = 1 << 20
# Error records carry at most this much of the text they could not parse.
ERROR_TEXT_LIMIT = 64 * 1024
# An element still unfinished after this many characters is taken as a lost structure, so a
# stray quote early in a huge file cannot pull the whole file into memory.
MAX_ELEMENT_CHARS = 256 * 1024 * 1024

_DECODER = json.JSONDecoder()
_NOT_WS = re.compile(r"[^ \t\r\n]")
_STRUCTURAL = re.compile(r'["\[\]{},]')
_STRING_STOP = re.compile(r'["\\]')
# Undecodable bytes become lone surrogates (errors="surrogateescape"); JSON text proper never
# contains them, since JSON writes such code points as \u escapes.
_UNDECODABLE = re.compile("[\udc80-\udcff]")


@dataclass
class _Element:
    text: str
    value: Any
    error: str | None
    fatal: bool  # the structure is lost: nothing after this element can be read

    def record(self, index: int, key: Any) -> RawRecord:
        return _record(index, key, self.text, self.value, self.error)


def _record(index: int, key: Any, text: str, value: Any = None, error: str | None = None) -> RawRecord:
    if error is None and _UNDECODABLE.search(text):
        error = "invalid UTF-8"
    if error is not None:
        return RawRecord(index=index, key=key, text=_printable(text[:ERROR_TEXT_LIMIT]), error=error)
    return RawRecord(index=index, key=key, text=text, value=value)


def _printable(text: str) -> str:
    """``text`` with undecodable bytes shown as U+FFFD, so it can be stored as a string."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _Text:
    """The decoded text of a binary stream, read on demand; ``pos`` is the parse position.

    ``base`` is the number of characters compacted away before ``buf``, so ``base + pos`` is a
    position in the whole stream; ``record_start`` is that position for the start of the last
    element or line read.
    """

    def __init__(self, stream: BinaryIO, chunk_size: int, encoding: str = "utf-8-sig") -> None:
        self._stream = stream
        self._chunk_size = chunk_size
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="surrogateescape")
        self.buf = ""
        self.pos = 0
        self.base = 0
        self.record_start = 0
        self.eof = False

    def more(self) -> bool:
        """Read more text; False at the end of the stream.

        The read grows with the pending text so that re-parsing a large element after each
        read stays linear overall.
        """
        if self.eof:
            return False
        data = self._stream.read(max(self._chunk_size, len(self.buf) - self.pos))
        if not data:
            self.eof = True
            self.buf += self._decoder.decode(b"", final=True)
            return False
        self.buf += self._decoder.decode(data)
        return True

    def compact(self) -> None:
        """Drop consumed text; only called between elements, when no position is held."""
        if self.pos > self._chunk_size:
            self.buf = self.buf[self.pos :]
            self.base += self.pos
            self.pos = 0

    def peek(self) -> str:
        """The next non-whitespace character (pos moves onto it), or "" at the end."""
        while True:
            found = _NOT_WS.search(self.buf, self.pos)
            if found:
                self.pos = found.start()
                return self.buf[self.pos]
            self.pos = len(self.buf)
            if not self.more() and self.pos == len(self.buf):
                return ""

    def line(self) -> str | None:
        """The next line without its end of line, or None at the end."""
        self.record_start = self.base + self.pos
        while True:
            newline = self.buf.find("\n", self.pos)
            if newline >= 0:
                line, self.pos = self.buf[self.pos : newline], newline + 1
                return line.removesuffix("\r")
            if not self.more():
                break
        if self.pos == len(self.buf):
            return None
        line, self.pos = self.buf[self.pos :], len(self.buf)
        return line

    def element(self, closer: str) -> _Element:
        """The JSON value at ``pos``, which must end before a ',' or ``closer``."""
        start = self.pos
        self.record_start = self.base + start
        while True:
            error = None
            try:
                value, end = _DECODER.raw_decode(self.buf, start)
            except json.JSONDecodeError as exc:
                error = f"invalid JSON: {exc.msg} (offset {exc.pos - start})"
            except (ValueError, RecursionError) as exc:
                error = _unparsable(exc)
            else:
                after = _NOT_WS.search(self.buf, end)
                if after is None and not self.eof:
                    self.more()  # a number or literal may continue in the next chunk
                    continue
                if after is None or self.buf[after.start()] in (",", closer):
                    self.pos = end
                    return _Element(self.buf[start:end], value, None, fatal=False)
                error = f"invalid JSON: unexpected data after the value (offset {after.start() - start})"
            # Malformed (or incomplete): find where the element ends structurally.
            stop = _element_end(self.buf, start, closer)
            if stop is not None:
                self.pos = stop
                return _Element(self.buf[start:stop].rstrip(), None, error, fatal=False)
            if len(self.buf) - start > MAX_ELEMENT_CHARS or not self.more():
                reason = f"{error}; the JSON structure is lost, the rest of the file is skipped"
                element = _Element(self.buf[start : start + ERROR_TEXT_LIMIT], None, reason, fatal=True)
                self.base += len(self.buf)
                self.buf, self.pos = "", 0
                return element

    def member_key(self) -> str | None:
        """Consume ``"key":`` of an object member; None (pos unchanged) if it is malformed."""
        start = self.pos
        while True:
            try:
                key, end = _DECODER.raw_decode(self.buf, start)
            except (ValueError, RecursionError):
                if _element_end(self.buf, start, "}") is None and self.more():
                    continue
                return None
            self.pos = end
            if isinstance(key, str) and self.peek() == ":":
                self.pos += 1
                self.peek()
                return key
            self.pos = start
            return None


def _unparsable(exc: ValueError | RecursionError, what: str = "invalid JSON") -> str:
    """The reason for well-formed JSON that Python will not parse: nesting deeper than its
    recursion limit, an integer longer than its digit limit."""
    if isinstance(exc, RecursionError):
        return f"{what}: nested too deeply"
    return f"{what}: {str(exc)[:200]}"


def _element_end(buf: str, pos: int, closer: str) -> int | None:
    """Index of the first ',' or ``closer`` at nesting depth 0 from ``pos``, skipping strings;
    None when the buffer ends first."""
    depth = 0
    i = pos
    while True:
        found = _STRUCTURAL.search(buf, i)
        if found is None:
            return None
        char, i = found.group(), found.end()
        if char == '"':
            while True:
                stop = _STRING_STOP.search(buf, i)
                if stop is None:
                    return None
                i = stop.end()
                if stop.group() == '"':
                    break
                i += 1  # the escaped character
        elif char in "[{":
            depth += 1
        elif char in "]}":
            if depth:
                depth -= 1
            elif char == closer:
                return found.start()
            # a stray closer of the other kind: part of this malformed element
        elif depth == 0:
            return found.start()


def _items(text: _Text, closer: str, first_index: int = 0) -> Generator[RawRecord, None, bool]:
    """Records of the array or object whose opening bracket was consumed (or from one of its
    elements on, numbered from ``first_index``); True if it closed."""
    keyed = closer == "}"
    index = first_index
    if text.peek() == closer:
        text.pos += 1
        return True
    while True:
        text.compact()
        key = text.member_key() if keyed else None
        element = text.element(closer)
        if keyed and key is None:
            detail = f": {element.error.removeprefix('invalid JSON: ')}" if element.error else ""
            element = _Element(element.text, None, "invalid JSON: malformed object member" + detail, element.fatal)
        yield element.record(index, key)
        index += 1
        if element.fatal:
            return False
        char = text.peek()
        if char == ",":
            text.pos += 1
            char = text.peek()
            if char != closer:  # a trailing comma before the closer is tolerated
                continue
        if char == closer:
            text.pos += 1
            return True
        kind = "object" if keyed else "array"
        yield RawRecord(index=index, key=None, text="", error=f"JSON {kind} not closed: file truncated?")
        return False


def _container(text: _Text, closer: str, first_index: int = 0) -> Iterator[RawRecord]:
    """Records of a top-level array or object, then an error record for any trailing data."""
    count = first_index
    records = _items(text, closer, first_index)
    while True:
        try:
            record = next(records)
        except StopIteration as done:
            closed = done.value
            break
        count = record.index + 1
        yield record
    if closed and text.peek():
        while len(text.buf) - text.pos < ERROR_TEXT_LIMIT and text.more():
            pass
        trailing = text.buf[text.pos : text.pos + ERROR_TEXT_LIMIT]
        yield _record(count, None, trailing, error="invalid JSON: unexpected data after the top-level value")


def _lines(text: _Text, first_index: int = 0) -> Iterator[RawRecord]:
    index = first_index
    while True:
        text.compact()
        line = text.line()
        if line is None:
            return
        stripped = line.strip(" \t\r")
        if not stripped:
            continue
        yield _parse_line(index, stripped)
        index += 1


def _parse_line(index: int, line: str) -> RawRecord:
    try:
        value, end = _DECODER.raw_decode(line)
    except json.JSONDecodeError as exc:
        return _record(index, None, line, error=f"invalid JSON line: {exc.msg} (offset {exc.pos})")
    except (ValueError, RecursionError) as exc:
        return _record(index, None, line, error=_unparsable(exc, "invalid JSON line"))
    after = _NOT_WS.search(line, end)
    if after is not None:
        return _record(
            index, None, line, error=f"invalid JSON line: unexpected data after the value (offset {after.start()})"
        )
    return _record(index, None, line, value)


def read_json_array(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[RawRecord]:
    """The elements of a JSON array file, in order; ``key`` is None."""
    text = _Text(stream, chunk_size)
    if text.peek() != "[":
        yield _record(0, None, _head(text), error="expected a JSON array")
        return
    text.pos += 1
    yield from _container(text, "]")


def read_jsonl(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[RawRecord]:
    """One record per non-blank line; ``index`` counts records, not lines."""
    yield from _lines(_Text(stream, chunk_size))


def read_records(stream: BinaryIO, chunk_size: int = CHUNK_SIZE) -> Iterator[RawRecord]:
    """Records of a JSON array or of JSON lines, whatever the file name says.

    A file starting with '[' is an array; otherwise it is JSON lines, unless its first line is
    an unfinished object (a pretty-printed document), which yields one error record.
    """
    text = _Text(stream, chunk_size)
    yield from _records(text, _layout(text))


def _layout(text: _Text) -> str:
    """How the records of a file are laid out: "array" (its bracket is consumed), "lines" or
    "document" (no records)."""
    first = text.peek()
    if first == "[":
        text.pos += 1
        return "array"
    if first == "{" and not _first_line(text).rstrip().endswith("}"):
        return "document"
    return "lines"


def records_layout(stream: BinaryIO) -> str:
    """How ``read_records`` reads a file, from its first line: "JSON array", "JSON lines" or
    "JSON document" (which it rejects)."""
    layout = _layout(_Text(stream, CHUNK_SIZE))
    return {"array": "JSON array", "lines": "JSON lines", "document": "JSON document"}[layout]


def _records(text: _Text, layout: str, first_index: int = 0) -> Iterator[RawRecord]:
    if layout == "array":
        return _container(text, "]", first_index)
    if layout == "lines":
        return _lines(text, first_index)
    error = "expected a JSON array or JSON lines, found a JSON document"
    return iter([_record(0, None, _head(text), error=error)])


@dataclass(frozen=True)
class Split:
    """A part of a JSON array or JSON lines file: ``count`` records (all the rest when None)
    from byte ``offset``, where record ``first_index`` of the file starts (0: the file start).
    ``layout`` ("array" or "lines") says how to read on from the middle of the file."""

    offset: int
    first_index: int
    count: int | None
    layout: str


def scan_splits(stream: BinaryIO, split_bytes: int, chunk_size: int = CHUNK_SIZE) -> list[Split]:
    """Splits of about ``split_bytes`` covering every record of the file, in order.

    The whole file is read once, as ``read_records`` reads it, holding one element at a time.
    A split starts at an element (or line) at least ``split_bytes`` after the previous split's
    start, so a record over ``split_bytes`` is a split of its own.
    """
    text = _Text(stream, chunk_size, encoding="latin-1")  # one character per byte
    while len(text.buf) < len(codecs.BOM_UTF8) and text.more():
        pass
    if text.buf.startswith(codecs.BOM_UTF8.decode("latin-1")):
        text.pos = len(codecs.BOM_UTF8)
    layout = _layout(text)
    splits = []
    offset, first_index = 0, 0
    for record in _records(text, layout):
        # Error records after the last element (a missing bracket, trailing data) keep the
        # start of that element, so they never open a split.
        if text.record_start - offset >= split_bytes and record.index > first_index:
            splits.append(Split(offset, first_index, record.index - first_index, layout))
            offset, first_index = text.record_start, record.index
    splits.append(Split(offset, first_index, None, layout))
    return splits


def read_split(stream: BinaryIO, split: Split, chunk_size: int = CHUNK_SIZE) -> Iterator[RawRecord]:
    """The records of ``split``, from a stream positioned at ``split.offset``; the same records
    ``read_records`` gives for that part of the file."""
    if split.offset == 0:
        records = read_records(stream, chunk_size)
    else:
        # Plain UTF-8 from the middle of the file: a U+FEFF there is text, not a BOM.
        records = _records(_Text(stream, chunk_size, encoding="utf-8"), split.layout, split.first_index)
    return records if split.count is None else islice(records, split.count)


def read_json_object(stream: BinaryIO, field: str | None = None, chunk_size: int = CHUNK_SIZE) -> Iterator[RawRecord]:
    """The members of a JSON object of records (``{"key": record, ...}``), keyed by name.

    With ``field``, the records are the members of the top-level member ``field`` (MIMIC-IT's
    ``{"meta": ..., "data": {...}}``); other top-level members are skipped and anything after
    ``field`` is ignored.
    """
    text = _Text(stream, chunk_size)
    if text.peek() != "{":
        yield _record(0, None, _head(text), error="expected a JSON object")
        return
    text.pos += 1
    if field is None:
        yield from _container(text, "}")
        return
    while text.peek() not in ("}", ""):
        key = text.member_key()
        if key is None:
            break
        if key == field and text.peek() == "{":
            text.pos += 1
            yield from _items(text, "}")
            return
        if text.element("}").fatal:
            break
        if text.peek() == ",":
            text.pos += 1
    yield _record(0, None, _head(text), error=f"no {field!r} object in the JSON document")


def _first_line(text: _Text) -> str:
    while text.buf.find("\n", text.pos) < 0 and text.more():
        pass
    end = text.buf.find("\n", text.pos)
    return text.buf[text.pos : end if end >= 0 else len(text.buf)]


def _head(text: _Text) -> str:
    while len(text.buf) < ERROR_TEXT_LIMIT and text.more():
        pass
    return text.buf[:ERROR_TEXT_LIMIT]
