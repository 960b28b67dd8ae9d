"""The ``Lake``: table naming, engine choice, and the reads, writes and deletes it hands to the
engine (``delta_rs``, ``delta_spark``)."""
from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from framelake.lake import maintenance
from framelake.lake.delta_rs import DeltaRsEngine
from framelake.lake.delta_spark import SESSION_EXTENSIONS, DeltaSparkEngine
from framelake.lake.errors import EngineError
from framelake.lake.maintenance import DEFAULT_RETENTION_HOURS, TableInfo, TableVersion, VacuumResult
from framelake.lake.parquet import parquet_batches
from framelake.storage import Storage, is_s3
from udfs.schemas import TABLES

if TYPE_CHECKING:
    from framelake.config import CatalogSettings


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
        # Through Spark's class loader, which holds spark.jars and --jars.
        loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
        jvm.java.lang.Class.forName("io.delta.tables.DeltaTable", True, loader)
        return True
    except Exception:  # py4j raises its own error type when the class is missing
        return False


class Lake:
    def __init__(self, root: str, storage: Storage, spark=None, engine: str = "auto",
                 catalog: CatalogSettings | None = None):
        """``engine``: "delta-rs", "delta-spark", or "auto" (delta-spark where the session has
        Delta's classes). ``spark`` may be None for driver-only use (inspect, report, tests):
        then only reads through delta-rs work."""
        self.root = root.rstrip("/")
        self.storage = storage
        self.spark = spark
        self.catalog = catalog
        if engine == "auto":
            engine = "delta-spark" if spark is not None and delta_spark_available(spark) else "delta-rs"
        if engine == "delta-spark" and spark is not None and not delta_spark_available(spark):
            raise EngineError(
                "lake.engine delta-spark: this Spark session has no Delta classes or extensions; start it with "
                "--jars from jars/fetch.sh (or --packages io.delta:delta-spark_2.13:4.4.0) and --conf "
                + " --conf ".join(f"{k}={v}" for k, v in SESSION_EXTENSIONS.items()))
        self.engine = engine
        if catalog is not None and engine != "delta-spark":
            warnings.warn("catalog: registering tables by name needs delta-spark; they are used by path only",
                          stacklevel=2)
        self._writer = None

    @property
    def writer(self) -> DeltaRsEngine | DeltaSparkEngine:
        """The engine's reads and writes, made on first use (a driver-only lake, without Spark,
        has delta-rs's vacuum but no Spark reads or writes)."""
        if self._writer is None:
            if self.engine == "delta-spark" and self.spark is None:
                raise EngineError("lake.engine delta-spark: this lake was opened without a Spark session")
            self._writer = DeltaSparkEngine(self) if self.engine == "delta-spark" else DeltaRsEngine(self)
        return self._writer

    # -- naming --------------------------------------------------------------------------
    def uri(self, *parts: str) -> str:
        return "/".join([self.root, *(p.strip("/") for p in parts)])

    def table_uri(self, name: str) -> str:
        return self.uri("tables", name)

    def spark_path(self, name: str) -> str:
        """The table's path as Spark's Hadoop file systems name it: ``s3a://`` for S3 outside
        Databricks (which maps ``s3://`` itself)."""
        uri = self.table_uri(name)
        if uri.startswith("s3://") and not os.environ.get("DATABRICKS_RUNTIME_VERSION"):
            return "s3a://" + uri[len("s3://"):]
        return uri

    def catalog_name(self, name: str) -> str:
        """The table's name in the configured catalog, quoted for Spark SQL."""
        return f"`{self.catalog.name}`.`{self.catalog.schema}`.`{name}`"

    def register_sql(self, name: str) -> str:
        """The statement that registers a table by name as an external table at its path."""
        location = self.spark_path(name).replace("\\", "\\\\").replace("'", "\\'")
        return f"CREATE TABLE IF NOT EXISTS {self.catalog_name(name)} USING DELTA LOCATION '{location}'"

    @property
    def delta_options(self) -> dict[str, str] | None:
        return self.storage.options.delta_rs_options() if is_s3(self.root) else None

    # -- delta-rs handles (driver side, whichever engine wrote the table) ----------------
    def delta_table(self, name: str):
        """The ``deltalake.DeltaTable`` of a table, or None if it does not exist yet."""
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
        return self.writer.read(name)

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
        return self.writer.write(name, df.select(*TABLES[name].names), mode)

    def replace(self, name: str, df, column: str, values: list[str], existing: list[str]) -> int:
        """Make the rows whose ``column`` is in ``values`` exactly ``df``'s rows (each of which
        has ``column`` in ``values``); ``existing``: the values that may already have rows.
        delta-spark does it in one commit (replaceWhere), delta-rs deletes then appends."""
        return self.writer.replace(name, df.select(*TABLES[name].names), column, values, existing)

    def delete(self, name: str, predicate: str) -> int | None:
        """Delete the rows matching a SQL ``predicate`` in one Delta commit. Returns the new
        table version, or None when the table does not exist yet."""
        if not self.exists(name):
            return None
        self.writer.delete(name, predicate)
        return self.delta_table(name).version()

    # -- maintenance (framelake.lake.maintenance) ----------------------------------------
    def info(self, name: str) -> TableInfo:
        return maintenance.info(self, name)

    def checksum(self, name: str) -> str:
        return maintenance.checksum(self, name)

    def vacuum(self, retention_hours: int = DEFAULT_RETENTION_HOURS, dry_run: bool = False) -> VacuumResult:
        return maintenance.vacuum(self, retention_hours, dry_run)

    def history(self, name: str, limit: int | None = None) -> list[TableVersion]:
        return maintenance.history(self, name, limit)


def _columns(name: str, columns: list[str] | None) -> pa.Schema:
    return TABLES[name] if columns is None else pa.schema([TABLES[name].field(c) for c in columns])
