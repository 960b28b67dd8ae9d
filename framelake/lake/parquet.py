"""Executor-side Parquet I/O: the mapInArrow functions that write a partition into files under
a table root and read committed files back, through ``Storage`` (S3 needs no ``s3a`` connector)."""
from __future__ import annotations

import os
import tempfile
import time
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from framelake.storage import Storage, is_s3

# Parquet files roll over at this many rows, bounding executor memory and file size.
ROWS_PER_FILE = 500_000
# The row ParquetPartWriter yields per file written, for the driver to commit.
ADDED_FILE = "path string, size long, num_records long, modification_time long"


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
