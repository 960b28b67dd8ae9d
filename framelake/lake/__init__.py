"""The lake: Delta tables and objects under one root (a local folder or ``s3://bucket/prefix``).

This package is the only code that knows Delta. Two engines, one behaviour:

* **delta-spark** (``delta_spark``): Delta Lake's Spark writer, with idempotent appends and
  ``replaceWhere``; S3 through ``s3a://``; with a ``catalog`` configured, each table written is
  also registered by name (``catalog.schema.table``) at its path. Chosen by ``lake.engine:
  delta-spark``, or by ``auto`` where the session has Delta's classes (Databricks, EMR,
  ``--packages``).
* **delta-rs** (``delta_rs``) everywhere else: executors stream their partition into Parquet
  files under the table root (through ``Storage``, so S3 works without an ``s3a`` connector),
  and the driver commits all files of a write in one Delta transaction (``transaction``).

Either reads what the other wrote. Reads list files from the Delta log, never from the folder,
so files of a write that never committed are never read.

Modules: ``tables`` (``Lake``: naming, engine choice, reads, writes, deletes), ``delta_rs`` and
``delta_spark`` (the engines), ``transaction`` (delta-rs commits and their recovery), ``parquet``
(executor-side Parquet I/O), ``maintenance`` (vacuum, checksum, history, info), ``errors``.
"""
from framelake.lake.delta_spark import session_conf as delta_spark_session_conf
from framelake.lake.errors import CommitConflictError, EngineError
from framelake.lake.maintenance import DEFAULT_RETENTION_HOURS, TableInfo, TableVersion, VacuumResult
from framelake.lake.parquet import ParquetPartWriter
from framelake.lake.tables import Lake, delta_spark_available

__all__ = [
    "DEFAULT_RETENTION_HOURS", "CommitConflictError", "EngineError", "Lake", "ParquetPartWriter", "TableInfo",
    "TableVersion", "VacuumResult", "delta_spark_available", "delta_spark_session_conf",
]
