"""The ``Lake``: table naming, engine choice, reads, writes and deletes."""
from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from framelake.failpoints import failpoint
from framelake.lake import maintenance, transaction
from framelake.lake.errors import CommitConflictError
from framelake.lake.maintenance import DEFAULT_RETENTION_HOURS, TableInfo, TableVersion, VacuumResult
from framelake.lake.parquet import ADDED_FILE, ParquetFileReader, ParquetPartWriter, parquet_batches
from framelake.storage import Storage, is_s3
from udfs.schemas import TABLES, to_spark_schema

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
        added = df.mapInArrow(ParquetPartWriter(self.storage, self.table_uri(name), schema), ADDED_FILE).collect()
        failpoint("lake.before_commit")
        return self.commit(name, [row.asDict() for row in added], mode)

    def commit(self, name: str, added_files: list[dict], mode: str) -> int:
        """Commit Parquet files already under the table root as one Delta transaction."""
        return transaction.commit(self, name, added_files, mode)

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
            except CommitConflictError:
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
