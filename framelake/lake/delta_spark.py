"""The delta-spark engine: Delta Lake's own Spark writer, as Databricks, EMR and clusters started
with ``--packages io.delta:delta-spark_2.13:...`` run it.

- Jars: a session framelake starts itself gets delta-spark and hadoop-aws from a local folder
  (``jars/fetch.sh`` fills it from Maven Central, matched to pyspark's Spark and Hadoop);
  spark-submit, Databricks and Spark Connect servers are given them by their own settings.
- S3 goes through Hadoop's ``s3a://`` connector, configured from the same ``storage:`` keys
  (``StorageOptions.s3a_conf``) as SQL settings of the session, which Delta's reads and writes
  take into their Hadoop configuration (also over Spark Connect).
- Appends are idempotent (``txnAppId``/``txnVersion``): a write whose commit landed but whose
  response was lost is recognised by its transaction version, not written twice; the rows a
  rerun replaces are replaced in one commit (``replaceWhere``).
- Tables stay readable and writable by delta-rs: deletion vectors, which delta-rs cannot read,
  are switched off for the tables framelake creates.
"""
from __future__ import annotations

import contextlib
import glob
import os
from pathlib import Path
from typing import TYPE_CHECKING

from framelake.failpoints import failpoint
from framelake.lake.errors import CommitConflictError
from framelake.storage import is_s3
from udfs.schemas import TABLES, to_spark_schema
from udfs.sql import sql_in

if TYPE_CHECKING:
    from framelake.lake.tables import Lake

# The delta-spark jar built for pyspark 4.2 (jars/pom.xml names the same versions).
DELTA_JAR = "delta-spark_2.13-4.4.0.jar"
SESSION_EXTENSIONS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}
# SQL settings of every delta-spark session framelake writes with (they may be set at runtime).
WRITE_SETTINGS = {
    "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
    # framelake vacuums with its own retention (framelake vacuum --retention-hours).
    "spark.databricks.delta.retentionDurationCheck.enabled": "false",
}
# Delta's exceptions for a commit that lost to a concurrent one (io.delta.exceptions.*).
_CONFLICTS = ("ConcurrentAppendException", "ConcurrentDeleteReadException", "ConcurrentDeleteDeleteException",
              "ConcurrentTransactionException", "ConcurrentWriteException", "MetadataChangedException",
              "ProtocolChangedException", "DELTA_CONCURRENT_")


def jars_folder() -> Path | None:
    """The folder of Delta's and hadoop-aws's jars: ``FRAMELAKE_DELTA_JARS``, else the newest
    one ``jars/fetch.sh`` completed under ``$FRAMELAKE_CACHE/jars`` (``~/.cache/framelake``)."""
    given = os.environ.get("FRAMELAKE_DELTA_JARS")
    if given:
        return Path(given)
    cache = Path(os.environ.get("FRAMELAKE_CACHE") or Path.home() / ".cache" / "framelake") / "jars"
    done = [Path(marker).parent for marker in glob.glob(str(cache / "*" / ".complete"))]
    done = [folder for folder in done if (folder / DELTA_JAR).is_file()]
    return max(done, key=lambda folder: (folder / ".complete").stat().st_mtime) if done else None


def session_conf() -> dict[str, str]:
    """What a session framelake starts itself needs for the delta-spark engine."""
    folder = jars_folder()
    if folder is None or not (folder / DELTA_JAR).is_file():
        raise RuntimeError(
            f"lake.engine delta-spark: no {DELTA_JAR} found (looked in {folder or '$FRAMELAKE_CACHE/jars'}); "
            "run `make jars` (jars/fetch.sh) or set FRAMELAKE_DELTA_JARS to a folder of the jars, or start Spark "
            "with --packages io.delta:delta-spark_2.13:4.4.0,org.apache.hadoop:hadoop-aws:3.5.0")
    jars = sorted(str(path) for path in folder.glob("*.jar"))
    return {"spark.jars": ",".join(jars), **SESSION_EXTENSIONS, **WRITE_SETTINGS}


def is_conflict(err: BaseException) -> bool:
    text = f"{type(err).__name__} {err}"
    return any(name in text for name in _CONFLICTS)


class DeltaSparkEngine:
    name = "delta-spark"

    def __init__(self, lake: Lake):
        self.lake = lake
        spark = lake.spark
        for key, value in WRITE_SETTINGS.items():
            spark.conf.set(key, value)
        if is_s3(lake.root) and not os.environ.get("DATABRICKS_RUNTIME_VERSION"):
            for key, value in lake.storage.options.s3a_conf().items():
                spark.conf.set(key, value)

    def path(self, name: str) -> str:
        return self.lake.spark_path(name)

    def read(self, name: str):
        if not self.lake.exists(name):
            return self.lake.spark.createDataFrame([], to_spark_schema(TABLES[name]))
        return self.lake.spark.read.format("delta").load(self.path(name))

    def write(self, name: str, df, mode: str, replace_where: str | None = None) -> int:
        """One commit: ``df`` appended, or as the table's content (``overwrite``), or in place
        of the rows matching ``replace_where``. Sent as the table's next transaction version
        of framelake's app id, so a commit that landed is never repeated."""
        df = self._plain_strings(name, df)
        app_id = f"framelake:{name}"
        table = self.lake.delta_table(name)
        txn = (table.transaction_version(app_id) or 0) + 1 if table is not None else 1
        writer = (df.write.format("delta").mode("overwrite" if replace_where else mode)
                  .option("txnAppId", app_id).option("txnVersion", txn))
        if replace_where:
            writer = writer.option("replaceWhere", replace_where)
        elif mode == "overwrite":
            writer = writer.option("overwriteSchema", True)
        try:
            writer.save(self.path(name))
            failpoint("lake.after_spark_commit")
        except Exception as err:
            landed = self.lake.delta_table(name)
            if landed is not None and (landed.transaction_version(app_id) or 0) >= txn:
                return landed.version()  # this very commit, its response lost
            if is_conflict(err):
                raise CommitConflictError(f"{name}: {err}") from err
            raise
        self.register(name)
        return self.lake.delta_table(name).version()

    @staticmethod
    def _plain_strings(name: str, df):
        """``df`` with each column cast to its type as DDL text, which the server parses: over
        Spark Connect a client's string type arrives with an explicit UTF8_BINARY collation,
        which Delta would write into the schema as ``string collate UTF8_BINARY`` (a type
        delta-rs does not know)."""
        from pyspark.sql import functions as F

        return df.select([F.col(f.name).cast(f.dataType.simpleString()).alias(f.name)
                          for f in to_spark_schema(TABLES[name]).fields])

    def replace(self, name: str, df, column: str, values: list[str], existing: list[str]) -> int:
        """The rows whose ``column`` is in ``values`` become ``df``'s, in one commit."""
        return self.write(name, df, "append", replace_where=sql_in(column, values) if existing else None)

    def delete(self, name: str, predicate: str) -> None:
        location = self.path(name).replace("`", "``")
        try:
            self.lake.spark.sql(f"DELETE FROM delta.`{location}` WHERE {predicate}")
        except Exception as err:
            if is_conflict(err):
                raise CommitConflictError(f"{name}: {err}") from err
            raise

    def vacuum_table(self, name: str, retention_hours: float, dry_run: bool) -> list[str]:
        """Files of the table no version within the retention needs (Spark's own VACUUM:
        also files no commit ever listed), as lake URIs."""
        statement = f"VACUUM delta.`{self.path(name).replace('`', '``')}` RETAIN {retention_hours:g} HOURS"
        with self._listing_parallelism():
            # Listed first: when it deletes, VACUUM returns the table's path, not the files.
            listed = [row[0] for row in self.lake.spark.sql(statement + " DRY RUN").collect()]
            if listed and not dry_run:
                self.lake.spark.sql(statement).collect()
        prefix = self.path(name).rstrip("/") + "/"
        return [self.lake.table_uri(name) + "/" + path.split(prefix, 1)[-1] for path in listed]

    @contextlib.contextmanager
    def _listing_parallelism(self):
        """VACUUM lists the table's folder in as many tasks as partition discovery may use
        (10,000 by default: minutes of task overhead for a small table); the session's shuffle
        partitions, which a cluster sizes to its cores, serve instead."""
        conf, key = self.lake.spark.conf, "spark.sql.sources.parallelPartitionDiscovery.parallelism"
        before = conf.get(key, None)
        conf.set(key, conf.get("spark.sql.shuffle.partitions", "8"))
        try:
            yield
        finally:
            if before is None:
                conf.unset(key)
            else:
                conf.set(key, before)

    def register(self, name: str) -> None:
        """With a ``catalog``, the table is also known by name (an external table at its path)."""
        catalog = self.lake.catalog
        if catalog is None:
            return
        self.lake.spark.sql(f"CREATE SCHEMA IF NOT EXISTS `{catalog.name}`.`{catalog.schema}`")
        self.lake.spark.sql(self.lake.register_sql(name))
