"""Adapter bases: one sample per record, and records read from one JSON file per unit."""

from __future__ import annotations

import contextlib
import posixpath
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, ClassVar, Iterator

from udfs.adapters import Adapter, NormalizeContext, RawRecord
from udfs.adapters.common import check_conversation, own_id, record_language, require_object
from udfs.adapters.compression import checked_compression, file_description, open_annotation
from udfs.adapters.readers import Split, read_records, read_split, records_layout
from udfs.sample import make_sample


@dataclass
class SampleParts:
    """What an adapter extracts from one record; ``RecordAdapter`` makes the sample row."""

    media: list[dict]
    conversations: list[dict]
    media_type: str | None = None  # None: inferred from the media kinds
    record_key: Any = None  # None: the record's index
    in_context: list[dict] = field(default_factory=list)
    language: str | None = None
    notes: list[dict] = field(default_factory=list)  # schemas.NOTE: what was accepted with a change


class RecordAdapter(Adapter):
    """An adapter whose every record gives exactly one sample."""

    def parts(self, record: RawRecord, ctx: NormalizeContext) -> SampleParts:
        raise NotImplementedError

    def normalize(self, record: RawRecord, source_file: str, ctx: NormalizeContext) -> list[dict]:
        parts = self.parts(record, ctx)
        check_conversation(parts.conversations)
        return [
            make_sample(
                source=ctx.spec.name,
                fmt=self.name,
                source_file=source_file,
                file_key=ctx.spec.file_key(source_file),
                record_index=record.index,
                record_key=record.index if parts.record_key is None else parts.record_key,
                media=parts.media,
                conversations=parts.conversations,
                raw=record.text,
                media_type=parts.media_type,
                in_context=parts.in_context,
                language=parts.language,
                notes=parts.notes,
            )
        ]


class JsonRecordsAdapter(RecordAdapter):
    """Records are the objects of one JSON array or JSON-lines file (the unit's only file),
    which can be read in splits, or streamed decompressed (``udfs.adapters.compression``).

    The sample is keyed by the record's ``id`` when it has one (``uses_record_id``), else by
    its index; its language is the one the record declares.
    """

    splittable = True
    uses_record_id: ClassVar[bool] = True

    def read(self, unit: list[str], ctx: NormalizeContext, split: Split | None = None) -> Iterator[RawRecord]:
        if len(unit) != 1:
            raise ValueError(f"{self.name} reads one file per unit, got {len(unit)}")
        if split is None:
            with contextlib.closing(open_annotation(ctx.open_binary, unit[0])) as stream:
                yield from read_records(stream)
        else:
            with ctx.open_binary(unit[0], split.offset) as stream:
                yield from read_split(stream, split)

    def describe_file(self, uri: str, open_binary: Callable[..., BinaryIO]) -> str:
        compression = checked_compression(open_binary, uri)
        with contextlib.closing(open_annotation(open_binary, uri)) as stream:
            layout = records_layout(stream)
        if layout == "JSON document":
            raise ValueError(f"{posixpath.basename(uri)}: a JSON document, not a JSON array or JSON lines")
        return file_description(layout, compression)

    def parts(self, record: RawRecord, ctx: NormalizeContext) -> SampleParts:
        obj = require_object(record.value)
        parts = self.parts_of(obj, ctx)
        parts.record_key = own_id(obj) if self.uses_record_id else None
        parts.language = record_language(obj)
        return parts

    def parts_of(self, obj: dict, ctx: NormalizeContext) -> SampleParts:
        raise NotImplementedError
