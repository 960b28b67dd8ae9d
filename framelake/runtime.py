"""What every stage runs with: the config, a SparkSession, object storage and the lake."""
from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from framelake.config import STAGES, Config, SparkSettings, load_config
from framelake.lake import Lake
from framelake.lock import LakeConflictError, lake_lock
from framelake.progress import Progress
from framelake.storage import Storage

# Defaults for a session framelake creates itself; spark.conf and spark-submit's --conf override them.
_LOCAL_DEFAULTS = {
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2048",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}


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
    if settings.remote:
        # The server owns master, executors and their Python; a client sets SQL settings only.
        builder = SparkSession.builder.remote(settings.remote)
        wanted = {"spark.app.name": app_name, **settings.conf}
    else:
        # Executors must run the same interpreter (and so the same installed packages) as us.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = SparkSession.builder
        wanted = {"spark.master": settings.master, "spark.app.name": app_name, **_LOCAL_DEFAULTS, **settings.conf}
    given = _spark_submit_conf()
    for key, value in wanted.items():
        if key not in given:
            builder = builder.config(key, value)
    return builder.getOrCreate()


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
