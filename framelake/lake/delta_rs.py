"""The delta-rs engine, which needs no JVM jars: executors stream their partition into Parquet
files under the table root (through ``Storage``, so S3 works without an ``s3a`` connector),
and the driver commits all files of a write in one Delta transaction (``transaction``). Files
of a write that never commits are never read: reads list files from the Delta log."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from deltalake.exceptions import CommitFailedError

from framelake.failpoints import failpoint
from framelake.lake import transaction
from framelake.lake.errors import CommitConflictError
from framelake.lake.parquet import ADDED_FILE, ParquetFileReader, ParquetPartWriter
from framelake.storage import is_s3
from udfs.schemas import TABLES, to_spark_schema
from udfs.sql import sql_in

if TYPE_CHECKING:
    from framelake.lake.tables import Lake


class DeltaRsEngine:
    name = "delta-rs"

    def __init__(self, lake: Lake):
        self.lake = lake

    def read(self, name: str):
        lake = self.lake
        schema = to_spark_schema(TABLES[name])
        table = lake.delta_table(name)
        files = table.file_uris() if table is not None else []
        if not files:
            return lake.spark.createDataFrame([], schema)
        if not is_s3(lake.root):
            return lake.spark.read.schema(schema).parquet(*files)
        # No s3a connector: executors read the committed files through boto3.
        file_list = lake.spark.createDataFrame([(f,) for f in files], "path string")
        return file_list.repartition(min(len(files), 64)).mapInArrow(
            ParquetFileReader(lake.storage, TABLES[name]), schema
        )

    def write(self, name: str, df, mode: str) -> int:
        lake = self.lake
        writer = ParquetPartWriter(lake.storage, lake.table_uri(name), TABLES[name])
        added = df.mapInArrow(writer, ADDED_FILE).collect()
        failpoint("lake.before_commit")
        return self.commit(name, [row.asDict() for row in added], mode)

    def commit(self, name: str, added_files: list[dict], mode: str) -> int:
        try:
            return transaction.commit(self.lake, name, added_files, mode)
        except CommitFailedError as err:
            raise CommitConflictError(f"{name}: {err}") from err

    def replace(self, name: str, df, column: str, values: list[str], existing: list[str]) -> int:
        """The rows whose ``column`` is in ``values`` become ``df``'s: those of ``existing``
        deleted in one commit, ``df`` appended in the next."""
        if existing:
            self.delete(name, sql_in(column, existing))
        return self.write(name, df, "append")

    def delete(self, name: str, predicate: str) -> None:
        try:
            self.lake.delta_table(name).delete(predicate)
        except CommitFailedError:
            # Most likely this delete itself, applied with its response lost (see ``transaction``):
            # deleting again finds no rows if so, and the rows otherwise.
            try:
                self.lake.delta_table(name).delete(predicate)
            except CommitFailedError as err:
                raise CommitConflictError(f"{name}: {err}") from err

    def vacuum_table(self, name: str, retention_hours: float, dry_run: bool) -> list[str]:
        table = self.lake.delta_table(name)
        # full: also files the log never mentioned, not only those removed since a checkpoint;
        # listed first, since a vacuum that deletes commits twice even when nothing is found
        vacuum = functools.partial(table.vacuum, retention_hours=retention_hours,
                                   enforce_retention_duration=False, full=True)
        removed = vacuum(dry_run=True)
        if removed and not dry_run:
            removed = vacuum(dry_run=False)
        return [self.lake.uri("tables", name, path) for path in removed]
