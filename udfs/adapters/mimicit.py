"""MIMIC-IT (Luodian/Otter, ``mimic-it/README.md``, ``pipeline/mimicit_utils/mimicit_dataset.py``).

A task ``XX`` has up to three files in one folder:
- ``XX_instructions.json``: ``{"meta": ..., "data": {ins_id: {"instruction", "answer",
  "image_ids", "rel_ins_ids"}}}``, one record per instruction, keyed by its id;
- ``XX_train.json``: ``{ins_id: [example ins_id, ...]}``, the in-context examples, overriding
  ``rel_ins_ids`` (an instruction it does not list keeps its ``rel_ins_ids``);
- the images: ``XX.json`` (``{image_id: base64}``) or ``XX.parquet`` (a ``base64`` column
  indexed by image id), or under Otter's newer names (``docs/mimicit_format.md``)
  ``XX_images.parquet`` / ``XX_images.json``. Tasks sharing an image file (``LADD``,
  ``LACONV``... use ``LA.json``) find it as the longest image-file name their task name starts
  with. An image file is never a record: one no task uses is not read.

Octopus (dongyh20/Octopus) names a task's instructions ``XX.json`` beside ``XX_images.json``:
a ``XX.json`` is the instructions when ``XX_images.*`` is there and ``XX_instructions.json``
is not. Any of these JSON files may be compressed (``.gz``, ``.zst``).

Each instruction gives one sample: user = one placeholder per image id, then the instruction;
assistant = the answer; its images, in order, are stored in the lake with ``put_inline``.
Otter resamples video-like tasks to 16 frames; here every image id is kept and the sample is
"images" (frames as images). In-context examples go, structured, into ``in_context`` with
their own turns (same placeholder convention) and images. A missing image id, an unreadable
image or example, or an example that is not valid rejects the instruction with the reason.
An example id that names no instruction of the task (common in the released data) is dropped
and counted in the sample's ``notes`` ("in_context_dropped"); the source option
``missing_examples: reject`` rejects the instruction instead. Records without ``image_ids``
are text-only, as in Otter.

Images are streamed once per unit and only those referenced are decoded and stored;
instructions are held in memory (they are text).
"""

from __future__ import annotations

import contextlib
import io
import posixpath
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterator

import pyarrow.parquet as pq

from udfs.adapters import NormalizeContext, RawRecord, register
from udfs.adapters.base import RecordAdapter, SampleParts
from udfs.adapters.common import (
    check_conversation,
    decode_base64_image,
    json_type,
    record_language,
    require_object,
    required,
    source_text,
    with_media_prefix,
)
from udfs.adapters.compression import checked_compression, file_description, open_annotation, without_compression
from udfs.adapters.options import Option, one_of
from udfs.adapters.readers import read_json_object
from udfs.sample import RejectError, stored_media, turn

_INSTRUCTIONS_SUFFIX = "_instructions.json"
_TRAIN_SUFFIX = "_train.json"
# Longest first: ``DC_images.json`` is task DC's, not task ``DC_images``'s.
_IMAGE_SUFFIXES = ("_images.parquet", "_images.json", ".parquet", ".json")
_NOTE_DETAIL_LIMIT = 500


@dataclass
class _Task:
    """What the instructions of one task share: examples, and their stored images."""

    instructions: dict[str, RawRecord]
    unreadable: set[str] = field(default_factory=set)  # ids of members that could not be parsed
    examples: dict[str, RawRecord] = field(default_factory=dict)
    examples_error: str | None = None  # the train file could not be read entirely
    image_uris: dict[str, str] = field(default_factory=dict)
    image_errors: dict[str, str] = field(default_factory=dict)
    images_file: str | None = None
    images_error: str | None = None  # the image file could not be read entirely

    def image(self, image_id: Any) -> dict:
        if not isinstance(image_id, str):
            raise RejectError(f"image id must be a string, got {json_type(image_id)}")
        if image_id in self.image_uris:
            return stored_media("image", self.image_uris[image_id])
        if image_id in self.image_errors:
            raise RejectError(self.image_errors[image_id])
        if self.images_file is None:
            raise RejectError(f"image {image_id!r}: the task has no image file")
        unreadable = f" ({self.images_error})" if self.images_error else ""
        raise RejectError(f"image id {image_id!r} not found in {posixpath.basename(self.images_file)}{unreadable}")

    def lacks(self, ins_id: str) -> bool:
        """No instruction of the task has this id (not even an unreadable one)."""
        return ins_id not in self.instructions and ins_id not in self.unreadable

    def example_ids(self, ins_id: str, entry: dict) -> list:
        if ins_id in self.examples:
            record = self.examples[ins_id]
            if record.error is not None:
                raise RejectError(f"train entry of {ins_id!r} unreadable: {record.error}")
            ids = record.value
        elif self.examples_error is not None:
            raise RejectError(f"in-context examples unknown: {self.examples_error}")
        else:
            ids = entry.get("rel_ins_ids") or []
        if not isinstance(ids, list):
            raise RejectError(f"in-context example ids must be an array, got {json_type(ids)}")
        return ids


@dataclass
class _Instruction:
    """A record's value: the instruction entry, and the task it belongs to."""

    entry: Any
    task: _Task


@register("mimicit")
class MimicItAdapter(RecordAdapter):
    options = {"missing_examples": Option("drop", one_of("drop", "reject"))}

    def plan(self, files: list[str]) -> list[list[str]]:
        """One unit per task: ``[instructions, train?, images?]``; a train file no task uses is
        a unit of its own, read as one error record. An image file no task uses is in no unit:
        it holds no records."""
        by_folder: dict[str, list[str]] = {}
        for uri in sorted(files):
            by_folder.setdefault(posixpath.dirname(uri), []).append(uri)
        units = []
        for folder_files in by_folder.values():
            names = {without_compression(posixpath.basename(uri)): uri for uri in folder_files}
            tasks = _instruction_files(names)
            image_files = {
                _image_task(name): uri for name, uri in names.items() if _image_task(name) and name not in tasks
            }
            used: set[str] = set(image_files.values())
            for name, task in tasks.items():
                train = names.get(task + _TRAIN_SUFFIX)
                images = image_files.get(_longest_prefix(task, image_files))
                unit = [f for f in (names[name], train, images) if f is not None]
                used.update(unit)
                units.append(unit)
            units += [[uri] for uri in folder_files if uri not in used]
        return units

    def read(self, unit: list[str], ctx: NormalizeContext, split: None = None) -> Iterator[RawRecord]:
        instructions_file = unit[0]  # never split: a task's files are read together
        if _role(instructions_file) == "train":
            name = posixpath.basename(instructions_file)
            yield RawRecord(index=0, key=None, text="", error=f"{name}: no matching *{_INSTRUCTIONS_SUFFIX} file")
            return
        with contextlib.closing(open_annotation(ctx.open_binary, instructions_file)) as stream:
            records = list(read_json_object(stream, field="data"))
        task = _Task(
            instructions={r.key: r for r in records if r.key is not None and r.error is None},
            unreadable={r.key for r in records if r.key is not None and r.error is not None},
        )
        for uri in unit[1:]:
            if _role(uri) == "train":
                _load_examples(task, uri, ctx)
            else:
                _store_images(task, uri, ctx)
        for record in records:
            if record.error is None:
                # a new record: the task's own instructions keep their plain entries
                record = RawRecord(
                    index=record.index, key=record.key, text=record.text, value=_Instruction(record.value, task)
                )
            yield record

    def parts(self, record: RawRecord, ctx: NormalizeContext) -> SampleParts:
        instruction: _Instruction = record.value
        task = instruction.task
        entry = require_object(instruction.entry)
        media, turns = _turns_and_media(entry, task)
        example_ids = task.example_ids(record.key, entry)
        missing = [i for i in example_ids if isinstance(i, str) and task.lacks(i)]
        if missing and self.option(ctx.spec, "missing_examples") == "reject":
            raise RejectError(f"in-context example {missing[0]!r} not found (options.missing_examples: reject)")
        in_context = [_example(example_id, task) for example_id in example_ids if example_id not in missing]
        notes = [_dropped_note(missing)] if missing else []
        return SampleParts(
            media=media,
            conversations=turns,
            record_key=record.key,
            in_context=in_context,
            language=record_language(entry),
            notes=notes,
        )

    def describe_file(self, uri: str, open_binary: Callable[..., BinaryIO]) -> str:
        compression = checked_compression(open_binary, uri)
        role = _role(uri)
        if uri.endswith(".parquet"):
            with contextlib.closing(open_binary(uri)) as stream:
                head = stream.read(4)
            if head != b"PAR1":
                raise ValueError(f"{posixpath.basename(uri)}: not a Parquet file")
            return f"MIMIC-IT {role}, Parquet"
        with contextlib.closing(open_annotation(open_binary, uri)) as stream:
            head = stream.read(64).lstrip()
        if not head.startswith(b"{"):
            raise ValueError(f"{posixpath.basename(uri)}: not a JSON object")
        return f"MIMIC-IT {role}, " + file_description("JSON object", compression)


def _dropped_note(missing: list[str]) -> dict:
    """The ``schemas.NOTE`` of in-context example ids dropped because no instruction has them."""
    return {"kind": "in_context_dropped", "count": len(missing), "detail": ", ".join(missing)[:_NOTE_DETAIL_LIMIT]}


def _instruction_files(names: dict[str, str]) -> dict[str, str]:
    """Instructions file name -> task name, among a folder's file names (without compression):
    ``XX_instructions.json``, or Octopus's ``XX.json`` beside ``XX_images.*``."""
    tasks = {name: name.removesuffix(_INSTRUCTIONS_SUFFIX) for name in names if name.endswith(_INSTRUCTIONS_SUFFIX)}
    for name in names:
        task = name.removesuffix(".json")
        if (name.endswith(".json") and task + _INSTRUCTIONS_SUFFIX not in names
                and any(task + suffix in names for suffix in _IMAGE_SUFFIXES[:2])):
            tasks[name] = task
    return tasks


def _role(uri: str) -> str:
    """What a task's file holds, by its name: "train", "images" or "instructions"."""
    name = without_compression(posixpath.basename(uri))
    if name.endswith(_TRAIN_SUFFIX):
        return "train"
    return "instructions" if name.endswith(_INSTRUCTIONS_SUFFIX) or _image_task(name) is None else "images"


def _image_task(name: str) -> str | None:
    """The task name of an image file name (without compression), or None if it is not one."""
    if name.endswith((_INSTRUCTIONS_SUFFIX, _TRAIN_SUFFIX)):
        return None
    for suffix in _IMAGE_SUFFIXES:
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return None


def _longest_prefix(task: str, candidates: dict[str, str]) -> str | None:
    matching = [name for name in candidates if task.startswith(name)]
    return max(matching, key=len, default=None)


def _turns_and_media(entry: dict, task: _Task) -> tuple[list[dict], list[dict]]:
    instruction = source_text(required(entry, "instruction"), "instruction")
    answer = source_text(required(entry, "answer"), "answer")
    image_ids = entry.get("image_ids") or []
    if not isinstance(image_ids, list):
        raise RejectError(f"image_ids must be an array, got {json_type(image_ids)}")
    media = [task.image(image_id) for image_id in image_ids]
    turns = [turn("user", with_media_prefix(instruction, len(media))), turn("assistant", answer)]
    return media, turns


def _example(example_id: Any, task: _Task) -> dict:
    """One in-context example (``schemas.IN_CONTEXT``)."""
    if not isinstance(example_id, str):
        raise RejectError(f"in-context example id must be a string, got {json_type(example_id)}")
    record = task.instructions.get(example_id)
    if record is None:
        raise RejectError(f"in-context example {example_id!r} unreadable")
    try:
        media, turns = _turns_and_media(require_object(record.value), task)
        check_conversation(turns)
    except RejectError as exc:
        raise RejectError(f"in-context example {example_id!r}: {exc}") from None
    return {"example_id": example_id, "conversations": turns, "media": media}


def _load_examples(task: _Task, uri: str, ctx: NormalizeContext) -> None:
    name = posixpath.basename(uri)
    try:
        with contextlib.closing(open_annotation(ctx.open_binary, uri)) as stream:
            for record in read_json_object(stream):
                if record.key is not None:
                    task.examples[record.key] = record
                elif task.examples_error is None:
                    task.examples_error = f"{name}: {record.error}"
    except OSError as exc:
        task.examples_error = f"{name} unreadable: {type(exc).__name__}: {exc}"


def _store_images(task: _Task, uri: str, ctx: NormalizeContext) -> None:
    """Decodes and stores the images the task's instructions and examples refer to."""
    task.images_file = uri
    needed = _referenced_images(task)
    name = posixpath.basename(uri)
    try:
        with contextlib.closing(open_annotation(ctx.open_binary, uri)) as stream:
            images = _parquet_images(stream) if uri.endswith(".parquet") else _json_images(stream)
            for image_id, encoded, error in images:
                if image_id is None:
                    task.images_error = task.images_error or f"{name} partly unreadable: {error}"
                elif image_id in needed:
                    _store_image(task, image_id, encoded, error, ctx)
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) on bad parquet
        task.images_error = f"{name} unreadable: {type(exc).__name__}: {exc}"


def _store_image(task: _Task, image_id: str, encoded: Any, error: str | None, ctx: NormalizeContext) -> None:
    if error is not None:
        task.image_errors[image_id] = f"image {image_id!r} unreadable: {error}"
        return
    try:
        data, ext = decode_base64_image(encoded, f"image {image_id!r}")
    except RejectError as exc:
        task.image_errors[image_id] = str(exc)
        return
    try:
        task.image_uris[image_id] = ctx.put_inline(data, ext)
    except Exception as exc:  # noqa: BLE001 - a storage failure rejects the instructions using it
        task.image_errors[image_id] = f"internal: image {image_id!r} not stored: {type(exc).__name__}: {exc}"


def _referenced_images(task: _Task) -> set[str]:
    ids: set[str] = set()
    for record in task.instructions.values():
        if isinstance(record.value, dict) and isinstance(record.value.get("image_ids"), list):
            ids.update(i for i in record.value["image_ids"] if isinstance(i, str))
    return ids


_ImageEntry = tuple[str | None, Any, str | None]  # (image id, base64, read error)


def _json_images(stream: BinaryIO) -> Iterator[_ImageEntry]:
    for record in read_json_object(stream):
        yield record.key, record.value, record.error


def _parquet_images(stream: BinaryIO) -> Iterator[_ImageEntry]:
    if not stream.seekable():  # parquet needs random access: buffer the file
        stream = io.BytesIO(stream.read())
    parquet = pq.ParquetFile(stream)
    id_column = _parquet_id_column(parquet)
    for batch in parquet.iter_batches(batch_size=256, columns=[id_column, "base64"]):
        columns = batch.to_pydict()
        for image_id, encoded in zip(columns[id_column], columns["base64"], strict=True):
            yield str(image_id), encoded, None


def _parquet_id_column(parquet: pq.ParquetFile) -> str:
    """The column of image ids: the pandas index Otter writes, else the only other column."""
    schema = parquet.schema_arrow
    if "base64" not in schema.names:
        raise ValueError("no 'base64' column")
    index_columns = (schema.pandas_metadata or {}).get("index_columns", [])
    named = [c for c in index_columns if isinstance(c, str) and c in schema.names]
    others = [name for name in schema.names if name != "base64"]
    if named:
        return named[0]
    if len(others) == 1:
        return others[0]
    raise ValueError(f"cannot tell the image id column among {others}")
