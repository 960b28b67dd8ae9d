"""The normalize loop of one work unit: records in, sample or reject rows out (no Spark).

Every record an adapter reads ends as exactly one row: a sample, or a reject carrying the
reason. All built-in adapters give one sample per record; the loop also accepts several. A
file that cannot be opened or read, or an adapter bug, becomes a reject row too, so the job
never fails on data.
"""

from __future__ import annotations

from typing import Iterator

from udfs.adapters import Adapter, NormalizeContext, RawRecord
from udfs.sample import RejectError, stable_hash

RAW_LIMIT = 64 * 1024  # bytes of the record text kept in a reject
REASON_LIMIT = 2000


def normalize_unit(adapter: Adapter, unit: list[str], ctx: NormalizeContext) -> Iterator[tuple[str, dict]]:
    """``("sample", row)`` (``schemas.SAMPLES``) and ``("reject", row)`` (``schemas.REJECTS``)
    for every record of ``unit``; rows of a unit's records are attributed to ``unit[0]``.

    Two records with the same key in a file would share a sample id; the later ones get an
    id derived from it and their occurrence number, stable as long as the file is.
    """
    source_file = unit[0] if unit else ""
    seen_ids: dict[str, int] = {}
    records = adapter.read(unit, ctx)
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
            if kind == "sample":
                _deduplicate_id(row, seen_ids)
            yield kind, row


def _normalize_record(
    adapter: Adapter, record: RawRecord, source_file: str, ctx: NormalizeContext
) -> Iterator[tuple[str, dict]]:
    if record.error is not None:
        yield "reject", reject_row(ctx, adapter, source_file, record.index, record.error, record.text)
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


def _deduplicate_id(row: dict, seen_ids: dict[str, int]) -> None:
    sample_id = row["sample_id"]
    occurrence = seen_ids.get(sample_id, 0)
    seen_ids[sample_id] = occurrence + 1
    if occurrence:
        row["sample_id"] = stable_hash("duplicate", sample_id, occurrence, length=32)


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
