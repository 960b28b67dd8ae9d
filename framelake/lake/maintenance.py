"""Looking after a lake's tables: vacuum, checksum, history and info (``Lake`` delegates here)."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa

from framelake.lake.transaction import commit_actions
from udfs.schemas import TABLES

if TYPE_CHECKING:
    from framelake.lake.tables import Lake

# Columns whose values differ between two runs that made the same rows: left out of checksums.
RUN_DEPENDENT_COLUMNS = {"videos": {"elapsed_s"}}  # wall time ffmpeg took
# Delta's default retention: files younger than this may belong to a write still running.
DEFAULT_RETENTION_HOURS = 168


@dataclass(frozen=True)
class VacuumResult:
    """What ``Lake.vacuum`` removed (or, on a dry run, would remove): URIs per table, and the
    frame and shard objects no table row references."""

    table_files: dict[str, list[str]]
    objects: list[str]

    @property
    def count(self) -> int:
        return sum(len(files) for files in self.table_files.values()) + len(self.objects)


@dataclass(frozen=True)
class TableInfo:
    name: str
    uri: str
    version: int | None
    rows: int
    bytes: int
    files: int


@dataclass(frozen=True)
class TableVersion:
    """One commit of a table; counts are None when its log entry is gone (after a checkpoint)."""

    version: int
    timestamp_ms: int
    operation: str
    mode: str | None
    files_added: int | None
    rows_added: int | None
    files_removed: int | None


def info(lake: Lake, name: str) -> TableInfo:
    table = lake.delta_table(name)
    if table is None:
        return TableInfo(name, lake.table_uri(name), None, 0, 0, 0)
    adds = pa.table(table.get_add_actions(flatten=True))
    return TableInfo(
        name=name,
        uri=lake.table_uri(name),
        version=table.version(),
        rows=int(pa.compute.sum(adds["num_records"]).as_py() or 0) if adds.num_rows else 0,
        bytes=int(pa.compute.sum(adds["size_bytes"]).as_py() or 0) if adds.num_rows else 0,
        files=adds.num_rows,
    )


def checksum(lake: Lake, name: str) -> str:
    """An order-independent digest of the table's rows: equal for two tables holding the
    same rows (as a multiset), whatever their files or versions. Rows name the lake (frame,
    shard and inline media URIs, and the media ids made of them), so two lakes compare only
    at the same root. Each row is hashed as canonical JSON without ``RUN_DEPENDENT_COLUMNS``;
    the row hashes are summed, so a duplicated row changes the digest. ``<rows>:<hex>``."""
    excluded = RUN_DEPENDENT_COLUMNS.get(name, set())
    total, rows = 0, 0
    for batch in lake.arrow_batches(name, [c for c in TABLES[name].names if c not in excluded]):
        for row in batch.to_pylist():
            text = json.dumps(row, sort_keys=True, default=str)
            total += int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")
            rows += 1
    return f"{rows}:{total % (1 << 128):032x}"


def vacuum(lake: Lake, retention_hours: int = DEFAULT_RETENTION_HOURS, dry_run: bool = False) -> VacuumResult:
    """Remove what no table references and is older than ``retention_hours``: Parquet files
    of writes killed before their commit (and files earlier commits removed), frame JPEGs
    of waves killed before their commit or of videos since redone, shard files of models
    no longer configured. Younger files may belong to a run still writing: kept."""
    table_files = {}
    for name in TABLES:
        if lake.exists(name):
            files = lake.writer.vacuum_table(name, retention_hours, dry_run)
        else:  # a first write killed before its commit: nothing here was ever committed
            files = _older_than(lake, lake.table_uri(name), retention_hours, lambda uri: False)
            if not dry_run:
                for uri in files:
                    lake.storage.delete(uri)
        if files:
            table_files[name] = files
    frames = set(lake.read_arrow("frames", ["uri"]).column("uri").to_pylist())
    shards = set(lake.read_arrow("shards", ["shard_path"]).column("shard_path").to_pylist())
    # A manifest stays while its folder holds shards a table row lists.
    manifests = {uri.rsplit("/", 1)[0] + "/manifest.json" for uri in shards}
    objects = _older_than(lake, lake.uri("frames"), retention_hours, frames.__contains__)
    objects += _older_than(lake, lake.uri("shards"), retention_hours, (shards | manifests).__contains__)
    if not dry_run:
        for uri in objects:
            lake.storage.delete(uri)
    return VacuumResult(table_files, objects)


def _older_than(lake: Lake, folder: str, hours: float, referenced) -> list[str]:
    """Objects under ``folder`` not ``referenced`` and last modified over ``hours`` ago."""
    cutoff = time.time() - hours * 3600
    return [entry.uri for entry in lake.storage.list_info(folder)
            if entry.modified < cutoff and not referenced(entry.uri)]


def history(lake: Lake, name: str, limit: int | None = None) -> list[TableVersion]:
    """The table's commits, newest first. Rows added are counted from each commit's add
    actions: delta-rs commits carry no operation metrics."""
    table = lake.delta_table(name)
    if table is None:
        return []
    versions = []
    for commit in table.history(limit):
        actions = commit_actions(lake, name, commit["version"])
        adds = [a["add"] for a in actions or () if "add" in a]
        versions.append(TableVersion(
            version=commit["version"],
            timestamp_ms=commit["timestamp"],
            operation=commit.get("operation", ""),
            mode=(commit.get("operationParameters") or {}).get("mode"),
            files_added=None if actions is None else len(adds),
            rows_added=None if actions is None else sum(
                json.loads(a.get("stats") or "{}").get("numRecords", 0) for a in adds),
            files_removed=None if actions is None else sum("remove" in a for a in actions),
        ))
    return versions
