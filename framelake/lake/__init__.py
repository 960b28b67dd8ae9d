"""The lake: Delta tables and objects under one root (a local folder or ``s3://bucket/prefix``).

This package is the only code that knows Delta. Two engines, one behaviour:

* **delta-spark** when its classes are on the classpath (Databricks, EMR, ``--packages``):
  plain ``df.write.format("delta")``; with a ``catalog`` configured, each table written is also
  registered by name (``catalog.schema.table``) at its path.
* **delta-rs** everywhere else: executors stream their partition into Parquet files under the
  table root (through ``Storage``, so S3 works without an ``s3a`` connector), and the driver
  commits all files of a write in one Delta transaction. Files of a write that never commits
  are never read, since reads list files from the Delta log, never from the folder.

Modules: ``tables`` (``Lake``: naming, engine, reads, writes, deletes), ``transaction`` (delta-rs
commits and their recovery), ``parquet`` (executor-side Parquet I/O), ``maintenance`` (vacuum,
checksum, history, info), ``errors`` (what callers catch).
"""
from framelake.lake.errors import CommitConflictError
from framelake.lake.maintenance import DEFAULT_RETENTION_HOURS, TableInfo, TableVersion, VacuumResult
from framelake.lake.parquet import ParquetPartWriter
from framelake.lake.tables import Lake, delta_spark_available

__all__ = [
    "DEFAULT_RETENTION_HOURS", "CommitConflictError", "Lake", "ParquetPartWriter", "TableInfo", "TableVersion",
    "VacuumResult", "delta_spark_available",
]
