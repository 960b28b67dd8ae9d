"""The normalize stage without Spark: what a run has to do, and the loop of one work unit.

Every record an adapter reads ends as exactly one row: a sample, or a reject carrying the
reason. All built-in adapters give one sample per record; the loop also accepts several. A
file that cannot be opened or read, or an adapter bug, becomes a reject row too, so the job
never fails on data.

A run normalizes only what changed (``plan_run``). Each unit is known by the identity of its
files (URI, size, version) and the settings of its source, as the ``source_files`` table
(``schemas.SOURCE_FILES``) recorded them: a unit whose identity is unchanged keeps its
rows; the rows of changed and removed units are replaced.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Iterator, Mapping, Sequence

from udfs.adapters import Adapter, NormalizeContext, RawRecord, SourceSpec, get_adapter
from udfs.adapters.readers import Split
from udfs.fingerprint import fingerprint
from udfs.sample import RejectError, stable_hash

RAW_LIMIT = 64 * 1024  # bytes of the record text kept in a reject
REASON_LIMIT = 2000
# The largest record normalized, in characters of its JSON text. A sample row carries its
# record's text and turns, and Arrow batches hold rows whole: a 100 MB string would ride
# through every stage. Real records (M3IT with its base64 images) stay far below.
MAX_RECORD_CHARS = 32 * 1024 * 1024


@dataclass(frozen=True)
class WorkUnit:
    """What one task normalizes: the files of a unit (rows are attributed to the first), or
    one ``split`` of its only file. ``size`` is the bytes to read, to start big units first."""

    source: str
    files: tuple[str, ...]
    size: int
    split: Split | None = None


@dataclass
class RunPlan:
    """What a run does. ``units``: to normalize, whole (big files are split later). The rows
    earlier runs left for the units in ``replaced`` (source -> unit keys: to normalize, or
    gone) are deleted first; a source none of whose units is kept is in ``replaced_sources``
    instead, all its rows deleted. ``files``: the ``source_files`` rows of what is listed
    now. ``first``: no run recorded its files yet, so no earlier row is kept."""

    units: list[WorkUnit]
    kept: int
    replaced: dict[str, list[str]]
    replaced_sources: list[str]
    files: list[dict]
    first: bool


def settings_fingerprint(spec: SourceSpec) -> str:
    """Identifies what a source's rows depend on besides its files (``sample_id`` depends on
    the annotations root): rows made with other settings are replaced."""
    return fingerprint({k: v for k, v in asdict(spec).items() if k != "name"})


def plan_run(specs: Sequence[SourceSpec], listings: Mapping[str, Sequence], recorded: list[dict] | None) -> RunPlan:
    """The plan from each source's listed files (objects with ``uri``, ``size`` and ``version``,
    as ``framelake.storage.ObjectInfo``) and the ``source_files`` rows an earlier run
    recorded (None: no such table yet)."""
    files, units, identities = [], {}, {}
    for spec in specs:
        infos = {info.uri: info for info in listings[spec.name]}
        settings = settings_fingerprint(spec)
        for group in get_adapter(spec.format).plan(sorted(infos)):
            key = (spec.name, group[0])
            rows = [
                {"source": spec.name, "source_file": group[0], "uri": uri, "size": infos[uri].size,
                 "version": infos[uri].version, "settings": settings}
                for uri in group
            ]
            files += rows
            units[key] = WorkUnit(spec.name, tuple(group), sum(infos[uri].size for uri in group))
            identities[key] = _identity(rows)
    previous: dict[tuple[str, str], set] = {}
    for row in recorded or []:
        previous.setdefault((row["source"], row["source_file"]), set()).add(_file_identity(row))
    unchanged = {key for key, identity in identities.items() if previous.get(key) == identity}
    # Units to normalize may have rows too: a run killed before it recorded its files.
    replaced: dict[str, list[str]] = {}
    for source, source_file in sorted((set(previous) | set(identities)) - unchanged):
        replaced.setdefault(source, []).append(source_file)
    kept_sources = {source for source, _ in unchanged}
    return RunPlan(
        units=[unit for key, unit in units.items() if key not in unchanged],
        kept=len(unchanged),
        replaced={source: keys for source, keys in replaced.items() if source in kept_sources},
        replaced_sources=sorted(source for source in replaced if source not in kept_sources),
        files=files,
        first=recorded is None,
    )


def _file_identity(row: dict) -> tuple:
    return row["uri"], row["size"], row["version"], row["settings"]


def _identity(rows: list[dict]) -> set:
    return {_file_identity(row) for row in rows}


def normalize_unit(
    adapter: Adapter, unit: list[str], ctx: NormalizeContext, split: Split | None = None
) -> Iterator[tuple[str, dict]]:
    """``("sample", row)`` (``schemas.SAMPLES``) and ``("reject", row)`` (``schemas.REJECTS``)
    for every record of ``unit`` (of one ``split`` of its file, when given); rows of a unit's
    records are attributed to ``unit[0]``.

    Two records with the same key in a file would share a sample id; the later ones get
    ``duplicate_id`` of it and their occurrence number, stable as long as the file is. A split
    sees only part of the file: the job numbers the occurrences of its file's keys instead.
    """
    source_file = unit[0] if unit else ""
    seen_ids: dict[str, int] | None = {} if split is None else None
    records = adapter.read(unit, ctx, split)
    while True:
        try:
            record = next(records)
        except StopIteration:
            return
        except OSError as exc:
            yield "reject", reject_row(ctx, adapter, source_file, None, f"unreadable: {_describe(exc)}", "")
            return
        except Exception as exc:  # noqa: BLE001 - a reader bug must not fail the job
            yield "reject", reject_row(ctx, adapter, source_file, None, f"internal: {_describe(exc)}", "")
            return
        for kind, row in _normalize_record(adapter, record, source_file, ctx):
            if kind == "sample" and seen_ids is not None:
                _deduplicate_id(row, seen_ids)
            yield kind, row


def _normalize_record(
    adapter: Adapter, record: RawRecord, source_file: str, ctx: NormalizeContext
) -> Iterator[tuple[str, dict]]:
    if record.error is not None:
        yield "reject", reject_row(ctx, adapter, source_file, record.index, record.error, record.text)
        return
    if len(record.text) > MAX_RECORD_CHARS:
        reason = f"record too large: {len(record.text)} characters (limit {MAX_RECORD_CHARS})"
        yield "reject", reject_row(ctx, adapter, source_file, record.index, reason, record.text)
        return
    try:
        rows = adapter.normalize(record, source_file, ctx)
    except RejectError as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - an adapter bug rejects the record, not the job
        reason = f"internal: {_describe(exc)}"
    else:
        if rows:
            for row in rows:
                yield "sample", row
            return
        reason = "internal: the adapter returned no sample"
    yield "reject", reject_row(ctx, adapter, source_file, record.index, reason, record.text)


def duplicate_id(sample_id: str, occurrence: int) -> str:
    """The id of the ``occurrence``-th repeat (1, 2, ...) of ``sample_id`` in a file."""
    return stable_hash("duplicate", sample_id, occurrence, length=32)


def _deduplicate_id(row: dict, seen_ids: dict[str, int]) -> None:
    sample_id = row["sample_id"]
    occurrence = seen_ids.get(sample_id, 0)
    seen_ids[sample_id] = occurrence + 1
    if occurrence:
        row["sample_id"] = duplicate_id(sample_id, occurrence)


def reject_row(
    ctx: NormalizeContext, adapter: Adapter, source_file: str, record_index: int | None, reason: str, raw: str
) -> dict:
    """A ``schemas.REJECTS`` row of the normalize stage."""
    return {
        "stage": "normalize",
        "source": ctx.spec.name,
        "format": adapter.name,
        "source_file": source_file,
        "record_index": record_index,
        "reason": reason[:REASON_LIMIT],
        "raw": truncate_utf8(raw, RAW_LIMIT),
    }


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, on a character boundary."""
    if len(text) * 4 <= limit:
        return text
    return text[:limit].encode("utf-8")[:limit].decode("utf-8", "ignore")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
