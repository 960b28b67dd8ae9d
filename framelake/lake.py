"""The lake: Delta tables and objects under one root (a local folder or ``s3://bucket/prefix``).

This is the only module that knows Delta. Two engines, one behaviour:

* **delta-spark** when its classes are on the classpath (Databricks, EMR, ``--packages``):
  plain ``df.write.format("delta")``; with a ``catalog`` configured, each table written is also
  registered by name (``catalog.schema.table``) at its path.
* **delta-rs** everywhere else: executors stream their partition into Parquet files under the
  table root (through ``Storage``, so S3 works without an ``s3a`` connector), and the driver
  commits all files of a write in one Delta transaction. Files of a write that never commits
  are never read, since reads list files from the Delta log, never from the folder.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from framelake.failpoints import failpoint
from framelake.storage import Storage, is_s3
from udfs.schemas import TABLES, to_spark_schema

if TYPE_CHECKING:
    from framelake.config import CatalogSettings

# Parquet files roll over at this many rows, bounding executor memory and file size.
ROWS_PER_FILE = 500_000
_ADDED_FILE = "path string, size long, num_records long, modification_time long"
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


def delta_spark_available(spark) -> bool:
    """Whether this session can use delta-spark (native Delta on Databricks included)."""
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return True
    extensions = spark.conf.get("spark.sql.extensions", "") or ""
    if "DeltaSparkSessionExtension" not in extensions:
        return False
    jvm = getattr(spark, "_jvm", None)
    if jvm is None:  # Spark Connect: the server was configured for Delta.
        return True
    try:
        jvm.java.lang.Class.forName("io.delta.tables.DeltaTable")
        return True
    except Exception:  # py4j raises its own error type when the class is missing
        return False


class Lake:
    def __init__(self, root: str, storage: Storage, spark=None, engine: str | None = None,
                 catalog: CatalogSettings | None = None):
        """``spark`` may be None for driver-only use (inspect, tests): reads go through delta-rs."""
        self.root = root.rstrip("/")
        self.storage = storage
        self.spark = spark
        if engine is None:
            engine = "delta-spark" if spark is not None and delta_spark_available(spark) else "delta-rs"
        self.engine = engine
        self.catalog = catalog
        if catalog is not None and engine != "delta-spark":
            warnings.warn("catalog: registering tables by name needs delta-spark; they are used by path only",
                          stacklevel=2)

    # -- naming --------------------------------------------------------------------------
    def uri(self, *parts: str) -> str:
        return "/".join([self.root, *(p.strip("/") for p in parts)])

    def table_uri(self, name: str) -> str:
        return self.uri("tables", name)

    def catalog_name(self, name: str) -> str:
        """The table's name in the configured catalog, quoted for Spark SQL."""
        return f"`{self.catalog.name}`.`{self.catalog.schema}`.`{name}`"

    def register_sql(self, name: str) -> str:
        """The statement that registers a table by name as an external table at its path."""
        location = self._spark_path(name).replace("\\", "\\\\").replace("'", "\\'")
        return f"CREATE TABLE IF NOT EXISTS {self.catalog_name(name)} USING DELTA LOCATION '{location}'"

    @property
    def delta_options(self) -> dict[str, str] | None:
        return self.storage.options.delta_rs_options() if is_s3(self.root) else None

    # -- delta-rs handles (driver side) --------------------------------------------------
    def delta_table(self, name: str):
        """The ``deltalake.DeltaTable`` of a table, or None if it does not exist yet."""
        from deltalake import DeltaTable

        # Not DeltaTable.is_deltatable: on S3 it hangs for a table that does not exist yet.
        try:
            return DeltaTable(self.table_uri(name), storage_options=self.delta_options)
        except TableNotFoundError:
            return None

    def exists(self, name: str) -> bool:
        return self.delta_table(name) is not None

    # -- reads ---------------------------------------------------------------------------
    def read(self, name: str):
        """The table as a Spark DataFrame; an empty one if the table does not exist yet."""
        schema = to_spark_schema(TABLES[name])
        if self.engine == "delta-spark":
            if not self.exists(name):
                return self.spark.createDataFrame([], schema)
            return self.spark.read.format("delta").load(self._spark_path(name))
        table = self.delta_table(name)
        files = table.file_uris() if table is not None else []
        if not files:
            return self.spark.createDataFrame([], schema)
        if not is_s3(self.root):
            return self.spark.read.schema(schema).parquet(*files)
        # No s3a connector: executors read the committed files through boto3.
        file_list = self.spark.createDataFrame([(f,) for f in files], "path string")
        return file_list.repartition(min(len(files), 64)).mapInArrow(
            ParquetFileReader(self.storage, TABLES[name]), schema
        )

    def read_arrow(self, name: str, columns: list[str] | None = None) -> pa.Table:
        """The table on the driver: the files its Delta log lists (independent of Spark)."""
        return pa.Table.from_batches(list(self.arrow_batches(name, columns)), schema=_columns(name, columns))

    def arrow_batches(self, name: str, columns: list[str] | None = None):
        """The table's rows on the driver, batch by batch, from the files its log lists. Read
        with pyarrow, not through delta-rs's filesystem: a process that read through that can
        abort at exit ("terminate called without an active exception"), work all done, local
        tables included."""
        table = self.delta_table(name)
        schema = _columns(name, columns)
        if table is not None and table.protocol().reader_features:
            # Reader features (deletion vectors, column mapping: Databricks' defaults) change what
            # the files mean: delta-rs reads them, or says it cannot.
            dataset = table.to_pyarrow_dataset().to_table(columns=schema.names, use_threads=False)
            yield from dataset.cast(schema).to_batches()
            return
        for uri in table.file_uris() if table is not None else []:
            yield from parquet_batches(self.storage, uri, schema)

    # -- writes --------------------------------------------------------------------------
    def write(self, name: str, df, mode: str = "overwrite") -> int:
        """Write ``df`` as the table's new content (``overwrite``) or add it (``append``) in
        one Delta commit. Returns the committed table version."""
        if mode not in ("overwrite", "append"):
            raise ValueError(f"unknown write mode {mode!r}")
        schema = TABLES[name]
        df = df.select(*schema.names)
        if self.engine == "delta-spark":
            df.write.format("delta").mode(mode).option("overwriteSchema", mode == "overwrite").save(
                self._spark_path(name)
            )
            if self.catalog is not None:
                self.spark.sql(self.register_sql(name))
            return self.delta_table(name).version()
        added = df.mapInArrow(ParquetPartWriter(self.storage, self.table_uri(name), schema), _ADDED_FILE).collect()
        failpoint("lake.before_commit")
        return self.commit(name, [row.asDict() for row in added], mode)

    def commit(self, name: str, added_files: list[dict], mode: str) -> int:
        """Commit Parquet files already under the table root as one Delta transaction."""
        from deltalake import Schema
        from deltalake.transaction import AddAction, create_table_with_add_actions

        actions = [
            AddAction(
                f["path"], f["size"], {}, f["modification_time"], True,
                json.dumps({"numRecords": f["num_records"]}),
            )
            for f in added_files
        ]
        schema = TABLES[name]
        table = self.delta_table(name)
        try:
            if table is None:
                create_table_with_add_actions(
                    self.table_uri(name), Schema.from_arrow(schema), actions, mode="append",
                    name=name, storage_options=self.delta_options,
                )
            else:
                table.create_write_transaction(actions, mode=mode, schema=schema)
        except (DeltaError, OSError):  # delta-rs raises a store's errors as OSError
            # A store can apply a commit and lose the response (S3: a 500 after the write); the
            # retried conditional PUT then finds the version taken and delta-rs reports a conflict
            # with what is in fact this very commit. Its files, uuid-named, tell it apart.
            landed = self._version_adding(name, {f["path"] for f in added_files},
                                          after=-1 if table is None else table.version())
            if landed is None:
                raise
            return landed
        return self.delta_table(name).version()

    def _version_adding(self, name: str, paths: set[str], after: int) -> int | None:
        """The version after ``after`` whose commit adds exactly the files ``paths``, if any."""
        table = self.delta_table(name)
        if not paths or table is None:
            return None
        for version in range(after + 1, table.version() + 1):
            actions = self._commit_actions(name, version) or []
            if {a["add"]["path"] for a in actions if "add" in a} == paths:
                return version
        return None

    def delete(self, name: str, predicate: str) -> int | None:
        """Delete the rows matching a SQL ``predicate`` in one Delta commit. Returns the new
        table version, or None when the table does not exist yet."""
        table = self.delta_table(name)
        if table is None:
            return None
        if self.engine == "delta-spark":
            location = self._spark_path(name).replace("`", "``")
            self.spark.sql(f"DELETE FROM delta.`{location}` WHERE {predicate}")
        else:
            try:
                table.delete(predicate)
            except CommitFailedError:
                # Most likely this delete itself, applied with its response lost (see ``commit``):
                # deleting again finds no rows if so, and the rows otherwise.
                self.delta_table(name).delete(predicate)
        return self.delta_table(name).version()

    def _spark_path(self, name: str) -> str:
        uri = self.table_uri(name)
        # Hadoop's S3 connector is s3a:// outside Databricks (which maps s3:// itself).
        if uri.startswith("s3://") and not os.environ.get("DATABRICKS_RUNTIME_VERSION"):
            return "s3a://" + uri[len("s3://"):]
        return uri

    # -- inspection ----------------------------------------------------------------------
    def info(self, name: str) -> TableInfo:
        table = self.delta_table(name)
        if table is None:
            return TableInfo(name, self.table_uri(name), None, 0, 0, 0)
        adds = pa.table(table.get_add_actions(flatten=True))
        return TableInfo(
            name=name,
            uri=self.table_uri(name),
            version=table.version(),
            rows=int(pa.compute.sum(adds["num_records"]).as_py() or 0) if adds.num_rows else 0,
            bytes=int(pa.compute.sum(adds["size_bytes"]).as_py() or 0) if adds.num_rows else 0,
            files=adds.num_rows,
        )

    def checksum(self, name: str) -> str:
        """An order-independent digest of the table's rows: equal for two tables holding the
        same rows (as a multiset), whatever their files or versions. Rows name the lake (frame,
        shard and inline media URIs, and the media ids made of them), so two lakes compare only
        at the same root. Each row is hashed as canonical JSON without ``RUN_DEPENDENT_COLUMNS``;
        the row hashes are summed, so a duplicated row changes the digest. ``<rows>:<hex>``."""
        excluded = RUN_DEPENDENT_COLUMNS.get(name, set())
        total, rows = 0, 0
        for batch in self.arrow_batches(name, [c for c in TABLES[name].names if c not in excluded]):
            for row in batch.to_pylist():
                text = json.dumps(row, sort_keys=True, default=str)
                total += int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "big")
                rows += 1
        return f"{rows}:{total % (1 << 128):032x}"

    def vacuum(self, retention_hours: int = DEFAULT_RETENTION_HOURS, dry_run: bool = False) -> VacuumResult:
        """Remove what no table references and is older than ``retention_hours``: Parquet files
        of writes killed before their commit (and files earlier commits removed), frame JPEGs
        of waves killed before their commit or of videos since redone, shard files of models
        no longer configured. Younger files may belong to a run still writing: kept."""
        table_files = {}
        for name in TABLES:
            table = self.delta_table(name)
            if table is not None:
                # full: also files the log never mentioned, not only those removed since a checkpoint;
                # listed first, since a vacuum that deletes commits twice even when nothing is found
                vacuum = functools.partial(table.vacuum, retention_hours=retention_hours,
                                           enforce_retention_duration=False, full=True)
                removed = vacuum(dry_run=True)
                if removed and not dry_run:
                    removed = vacuum(dry_run=False)
                files = [self.uri("tables", name, path) for path in removed]
            else:  # a first write killed before its commit: nothing here was ever committed
                files = self._older_than(self.table_uri(name), retention_hours, lambda uri: False)
                if not dry_run:
                    for uri in files:
                        self.storage.delete(uri)
            if files:
                table_files[name] = files
        frames = set(self.read_arrow("frames", ["uri"]).column("uri").to_pylist())
        shards = set(self.read_arrow("shards", ["shard_path"]).column("shard_path").to_pylist())
        # A manifest stays while its folder holds shards a table row lists.
        manifests = {uri.rsplit("/", 1)[0] + "/manifest.json" for uri in shards}
        objects = self._older_than(self.uri("frames"), retention_hours, frames.__contains__)
        objects += self._older_than(self.uri("shards"), retention_hours, (shards | manifests).__contains__)
        if not dry_run:
            for uri in objects:
                self.storage.delete(uri)
        return VacuumResult(table_files, objects)

    def _older_than(self, folder: str, hours: float, referenced) -> list[str]:
        """Objects under ``folder`` not ``referenced`` and last modified over ``hours`` ago."""
        cutoff = time.time() - hours * 3600
        return [info.uri for info in self.storage.list_info(folder)
                if info.modified < cutoff and not referenced(info.uri)]

    def history(self, name: str, limit: int | None = None) -> list[TableVersion]:
        """The table's commits, newest first. Rows added are counted from each commit's add
        actions: delta-rs commits carry no operation metrics."""
        table = self.delta_table(name)
        if table is None:
            return []
        versions = []
        for commit in table.history(limit):
            actions = self._commit_actions(name, commit["version"])
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

    def _commit_actions(self, name: str, version: int) -> list[dict] | None:
        entry = self.uri("tables", name, "_delta_log", f"{version:020d}.json")
        if not self.storage.exists(entry):
            return None
        return [json.loads(line) for line in self.storage.read_bytes(entry).splitlines() if line.strip()]


def _columns(name: str, columns: list[str] | None) -> pa.Schema:
    return TABLES[name] if columns is None else pa.schema([TABLES[name].field(c) for c in columns])


class ParquetPartWriter:
    """mapInArrow function: streams a partition into Parquet files under a table root and
    yields one row per file for the driver to commit."""

    def __init__(self, storage: Storage, table_uri: str, schema: pa.Schema):
        self.storage = storage
        self.table_uri = table_uri
        self.schema = schema

    def __call__(self, batches):
        writer = None
        rows = 0
        for batch in batches:
            if batch.num_rows == 0:
                continue
            if writer is None:
                writer = _PartFile(self.storage, self.table_uri, self.schema)
            writer.write(pa.Table.from_batches([batch]).cast(self.schema))
            rows += batch.num_rows
            if rows >= ROWS_PER_FILE:
                yield writer.close()
                writer, rows = None, 0
        if writer is not None:
            yield writer.close()


class _PartFile:
    """One Parquet file being written; local tables get it in place, S3 via a temp upload."""

    def __init__(self, storage: Storage, table_uri: str, schema: pa.Schema):
        self.storage = storage
        self.name = f"part-{uuid.uuid4().hex}.zstd.parquet"
        self.uri = f"{table_uri}/{self.name}"
        if is_s3(table_uri):
            self.local = os.path.join(tempfile.gettempdir(), self.name)
        else:
            os.makedirs(table_uri, exist_ok=True)
            self.local = self.uri
        self.rows = 0
        self.writer = pq.ParquetWriter(self.local, schema, compression="zstd")

    def write(self, table: pa.Table) -> None:
        self.writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> pa.RecordBatch:
        self.writer.close()
        size = os.path.getsize(self.local)
        if self.local != self.uri:
            try:
                self.storage.upload_file(self.local, self.uri)
            finally:
                os.unlink(self.local)
        return pa.RecordBatch.from_pylist(
            [{"path": self.name, "size": size, "num_records": self.rows,
              "modification_time": int(time.time() * 1000)}]
        )


class ParquetFileReader:
    """mapInArrow function: reads committed Parquet files (one path per input row)."""

    def __init__(self, storage: Storage, schema: pa.Schema):
        self.storage = storage
        self.schema = schema

    def __call__(self, batches):
        for batch in batches:
            for path in batch.column("path").to_pylist():
                yield from parquet_batches(self.storage, path, self.schema)


def parquet_batches(storage: Storage, uri: str, schema: pa.Schema):
    """The ``schema`` columns of one committed Parquet file, batch by batch, cast to ``schema``."""
    with storage.local_copy(uri) as local:
        for batch in pq.ParquetFile(local).iter_batches(batch_size=8192, columns=schema.names, use_threads=False):
            yield from pa.Table.from_batches([batch]).cast(schema).to_batches()
