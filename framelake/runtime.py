"""What every stage runs with: the config, a SparkSession, object storage and the lake."""
from __future__ import annotations

import argparse
import atexit
import contextlib
import gc
import inspect
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from framelake.config import STAGES, Config, SparkSettings, load_config
from framelake.lake import Lake
from framelake.lock import LakeConflictError, lake_lock, process_alive
from framelake.progress import Progress
from framelake.storage import Storage

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
# workers and ffmpeg beside it. Its C2 compiler takes 2-5 s of CPU in a job's first minutes,
# from the cores those workers need; code compiled by C1 alone does this JVM's part as fast
# (bench: normalize 8-13 % faster, tokens even, the frames stage's fixed cost 0.9 -> 0.65 s).
# A default: ``spark.driver.extraJavaOptions`` adds to it, and setting this key replaces it.
_LOCAL_JVM_OPTIONS = {"spark.driver.defaultJavaOptions": "-XX:TieredStopAtLevel=1"}


def freeze_worker_heap() -> None:
    """Call first in every mapInArrow function. pyspark's worker daemon runs a full
    ``gc.collect()`` after each task (pyspark/daemon.py); with pyarrow, pandas and a boto3 client
    loaded it walks ~130k objects, 35-80 ms a task. What is alive as a task starts (modules,
    clients, tokenizers: the previous collection just freed the rest) is moved to the permanent
    generation, so those collections walk only what later tasks make."""
    gc.freeze()


def get_spark(settings: SparkSettings, app_name: str = "framelake"):
    """The active session (Databricks, notebooks, a Connect client that made one) or a new
    one: a Spark Connect session to ``settings.remote`` (``spark.remote`` or ``SPARK_REMOTE``),
    else a classic one on ``settings.master``. Under spark-submit, its ``--master`` and
    ``--conf`` win over the config's."""
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
        wanted = {"spark.master": settings.master, "spark.app.name": app_name, **_LOCAL_DEFAULTS, **sockets, **jvm,
                  **settings.conf}
    for key, value in wanted.items():
        if key not in given:
            builder = builder.config(key, value)
    return builder.getOrCreate()


def python_socket_conf(master: str, temp_dir: str) -> dict[str, str]:
    """In local mode, executors talk to their Python workers over Unix sockets: over localhost
    TCP a short task's input can wait ~40 ms on Nagle and delayed ACKs, more than the rest of
    the task costs. The sockets go in a folder of their own under ``temp_dir``, removed as this
    process exits (Spark leaves one behind unless the session is stopped). Not where a socket's
    path would be too long to bind, nor on a cluster, whose nodes' folders are theirs."""
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
    def create(cls, config: Config, spark=None, progress: Progress | None = None) -> "Context":
        spark = spark or get_spark(config.spark)
        storage = Storage(config.storage)
        lake = Lake(config.lake, storage, spark, catalog=config.catalog)
        return cls(config=config, spark=spark, storage=storage, lake=lake, progress=progress or Progress.quiet())


def stage_main(stage_run, argv: list[str] | None = None) -> None:
    """Entry point of ``spark-submit jobs/<stage>.py --config FILE``."""
    parser = argparse.ArgumentParser(description=stage_run.__module__)
    parser.add_argument("--config", required=True, help="framelake YAML config (local or s3://)")
    args = parser.parse_args(argv)
    context = Context.create(load_config(args.config), progress=Progress(sys.stdout))
    stage = Path(inspect.getfile(stage_run)).stem  # spark-submit runs jobs/<stage>.py as __main__
    with lake_lock(context.storage, context.lake.root):
        # A single stage is shown here; the pipeline shows each of its stages itself.
        with context.progress.stage(stage) if stage in STAGES else contextlib.nullcontext():
            result = rerun_on_commit_conflict(stage, stage_run, context)
    print(result.summary())


# A stage that failed on a commit conflict is rerun from the start this many times more.
STAGE_CONFLICT_RERUNS = 2


def rerun_on_commit_conflict(stage: str, stage_run, ctx: "Context", echo=print) -> "StageResult":
    """``stage_run(ctx)``, rerun when a Delta commit conflicts. Under the lake lock no other
    framelake run writes; ``Lake.commit`` and ``Lake.delete`` already settle this run's own
    commits whose response the store lost. What still conflicts is left to a stage rerun, which
    is a resume: it reads what was committed and does the rest. A conflict that persists is
    another writer's, and stops the run with that message."""
    from deltalake.exceptions import CommitFailedError

    for _ in range(STAGE_CONFLICT_RERUNS + 1):
        try:
            return stage_run(ctx)
        except CommitFailedError as err:
            conflict = err
            echo(f"[{stage}] Delta commit conflict, rerunning the stage: {str(err).splitlines()[0]}")
    raise LakeConflictError(
        f"stage {stage}: Delta commits conflicted {STAGE_CONFLICT_RERUNS + 1} times in a row: another writer is "
        f"changing tables under {ctx.lake.root} (framelake runs hold {ctx.lake.root}/_locks/run.json; other "
        f"tools do not); rerun when it is done. Last conflict: {str(conflict).splitlines()[0]}") from conflict


@dataclass
class StageResult:
    """What a stage did, as counts a user reads at the end of a run."""

    stage: str
    counts: dict
    elapsed_s: float
    details: dict | None = None

    def summary(self) -> str:
        counts = " ".join(f"{k}={v}" for k, v in self.counts.items())
        return f"[{self.stage}] {counts} ({self.elapsed_s:.1f}s)"
