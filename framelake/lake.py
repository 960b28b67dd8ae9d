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

from framelake.storage import Storage, is_s3
from udfs.schemas import TABLES, to_spark_schema

if TYPE_CHECKING:
    from framelake.config import CatalogSettings

# Parquet files roll over at this many rows, bounding executor memory and file size.
ROWS_PER_FILE = 500_000
_ADDED_FILE = "path string, size long, num_records long, modification_time long"


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
        from deltalake.exceptions import TableNotFoundError

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
        """The table on the driver, through delta-rs (independent of Spark)."""
        table = self.delta_table(name)
        if table is None:
            return TABLES[name].empty_table() if columns is None else TABLES[name].empty_table().select(columns)
        # On this thread: a process whose Arrow thread pool read through delta-rs's S3 filesystem
        # can abort at exit ("terminate called without an active exception"), work all done.
        return pa.table(table.to_pyarrow_dataset().to_table(columns=columns, use_threads=False))

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
        if table is None:
            create_table_with_add_actions(
                self.table_uri(name), Schema.from_arrow(schema), actions, mode="append",
                name=name, storage_options=self.delta_options,
            )
        else:
            table.create_write_transaction(actions, mode=mode, schema=schema)
        return self.delta_table(name).version()

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
            table.delete(predicate)
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
                with self.storage.local_copy(path) as local:
                    for part in pq.ParquetFile(local).iter_batches(batch_size=8192):
                        yield from pa.Table.from_batches([part]).cast(self.schema).to_batches()
