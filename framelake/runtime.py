"""What every stage runs with: the config, a SparkSession, object storage and the lake."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from framelake.config import Config, SparkSettings
from framelake.lake import Lake, delta_spark_session_conf
from framelake.lock import process_alive
from framelake.progress import Progress
from framelake.spark_log import SparkLog
from framelake.storage import Storage
from udfs.atomic import current_umask

# Defaults for a session framelake creates itself; spark.conf and spark-submit's --conf override them.
_LOCAL_DEFAULTS = {
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2048",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}
# Spark names a socket ``.<uuid>.sock`` (42 bytes) in its folder; Linux allows 107 bytes a path.
_SOCKET_NAME_BYTES, _SOCKET_PATH_MAX_BYTES = 42, 107
_SOCKET_FOLDER_PREFIX = "framelake-sock-"  # then the pid, "-" and mkdtemp's 8 characters
# A local session's JVM plans, schedules and moves Arrow batches, while the work runs in Python
# workers and ffmpeg beside it. Its C2 compiler takes seconds of CPU in a job's first minutes,
# from the cores those workers need; code compiled by C1 alone does this JVM's part as fast
# (docs/measurements.md). A default: ``spark.driver.extraJavaOptions`` adds to it, and setting this key replaces it.
# Delta rebuilds a table's state after each commit in 50 tasks by default, sized for clusters and
# large logs; on a local session those tasks' overhead doubled the time of a demo run
# (docs/measurements.md).
_LOCAL_DELTA_DEFAULTS = {"spark.databricks.delta.snapshotPartitions": "2"}
_LOCAL_JVM_OPTIONS = {"spark.driver.defaultJavaOptions": "-XX:TieredStopAtLevel=1"}


def get_spark(settings: SparkSettings, app_name: str = "framelake", delta_spark: bool = False,
              log: SparkLog | None = None):
    """The active session (Databricks, notebooks, a Connect client that made one) or a new
    one: a Spark Connect session to ``settings.remote`` (``spark.remote`` or ``SPARK_REMOTE``),
    else a classic one on ``settings.master``. Under spark-submit, its ``--master`` and
    ``--conf`` win over the config's. ``delta_spark``: a classic session framelake starts gets
    Delta's jars and extensions (spark-submit's and Connect servers' are their own to give).
    ``log``: the log4j settings of a JVM it starts (``framelake.spark_log``)."""
    from pyspark.sql import SparkSession

    # Under Connect (SPARK_CONNECT_MODE_ENABLED) this asks the Connect client, never a JVM.
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    given = _spark_submit_conf()
    if settings.remote:
        # The server owns master, executors and their Python; a client sets SQL settings only.
        builder = SparkSession.builder.remote(settings.remote)
        wanted = {"spark.app.name": app_name, **settings.conf}
    else:
        # Executors must run the same interpreter (and so the same installed packages) as us.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder
        master = given.get("spark.master", settings.master)
        sockets = python_socket_conf(master, tempfile.gettempdir())
        # Under spark-submit the JVM already runs: its options are spark-submit's to give.
        jvm = _LOCAL_JVM_OPTIONS if master.startswith("local") and not given else {}
        jvm = log.driver_options(jvm) if log and not given else jvm
        delta = delta_spark_session_conf() if delta_spark and not given else {}
        if delta and master.startswith("local"):
            delta = {**delta, **_LOCAL_DELTA_DEFAULTS}
        # Hadoop's file systems apply their own umask (022), not the process's: delta-spark's
        # files get the mode every other file of the lake gets.
        umask = {"spark.hadoop.fs.permissions.umask-mode": f"{current_umask():03o}"}
        wanted = {"spark.master": settings.master, "spark.app.name": app_name, **_LOCAL_DEFAULTS, **sockets, **jvm,
                  **delta, **umask, **settings.conf}
    for key, value in wanted.items():
        if key not in given:
            builder = builder.config(key, value)
    return builder.getOrCreate()


def python_socket_conf(master: str, temp_dir: str) -> dict[str, str]:
    """In local mode, executors talk to their Python workers over Unix sockets: over localhost
    TCP a short task's input can wait tens of milliseconds on Nagle and delayed ACKs, more than
    the rest of the task costs (docs/measurements.md). The sockets go in a folder of their own
    under ``temp_dir``, removed as this process exits (Spark leaves one behind unless the
    session is stopped). Not where a socket's path would be too long to bind, nor on a cluster,
    whose nodes' folders are theirs."""
    prefix = f"{_SOCKET_FOLDER_PREFIX}{os.getpid()}-"
    longest = os.path.join(temp_dir, prefix + "x" * 8, "x" * _SOCKET_NAME_BYTES)
    if not master.startswith("local") or len(os.fsencode(longest)) > _SOCKET_PATH_MAX_BYTES:
        return {}
    _remove_dead_socket_folders(temp_dir)
    folder = tempfile.mkdtemp(prefix=prefix, dir=temp_dir)
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return {"spark.python.unix.domain.socket.enabled": "true", "spark.python.unix.domain.socket.dir": folder}


def _remove_dead_socket_folders(temp_dir: str) -> None:
    """The socket folders of processes that were killed (no exit handler ran)."""
    for folder in Path(temp_dir).glob(_SOCKET_FOLDER_PREFIX + "*-*"):
        pid = folder.name[len(_SOCKET_FOLDER_PREFIX):].split("-")[0]
        if folder.is_dir() and pid.isdigit() and not process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _spark_submit_conf() -> dict[str, str]:
    """The settings spark-submit was given, when it started this driver (and its JVM)."""
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        return {}
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # attaches to spark-submit's JVM, whose properties hold them
    return dict(SparkConf().getAll())


@dataclass
class Context:
    config: Config
    spark: object
    storage: Storage
    lake: Lake
    progress: Progress = field(default_factory=Progress.quiet)  # the CLI and spark-submit show it

    @classmethod
    def create(cls, config: Config, spark=None, progress: Progress | None = None,
               spark_log: SparkLog | None = None) -> "Context":
        spark = spark or get_spark(config.spark, delta_spark=config.engine == "delta-spark", log=spark_log)
        storage = Storage(config.storage)
        lake = Lake(config.lake, storage, spark, engine=config.engine, catalog=config.catalog)
        return cls(config=config, spark=spark, storage=storage, lake=lake, progress=progress or Progress.quiet())
