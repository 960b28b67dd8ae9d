"""What every stage runs with: the config, a SparkSession, object storage and the lake."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from framelake.config import Config, SparkSettings, load_config
from framelake.lake import Lake
from framelake.storage import Storage

# Defaults for a session framelake creates itself; a given spark.conf overrides them.
_LOCAL_DEFAULTS = {
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.execution.arrow.maxRecordsPerBatch": "2048",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
}


def get_spark(settings: SparkSettings, app_name: str = "framelake"):
    """The active session (spark-submit, Databricks, notebooks) or a new one from settings."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Executors must run the same interpreter (and so the same installed packages) as us.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName(app_name)
    if settings.remote:
        builder = builder.remote(settings.remote)
    else:
        builder = builder.master(settings.master)
        for key, value in _LOCAL_DEFAULTS.items():
            builder = builder.config(key, value)
    for key, value in settings.conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


@dataclass
class Context:
    config: Config
    spark: object
    storage: Storage
    lake: Lake

    @classmethod
    def create(cls, config: Config, spark=None) -> "Context":
        spark = spark or get_spark(config.spark)
        storage = Storage(config.storage)
        return cls(config=config, spark=spark, storage=storage, lake=Lake(config.lake, storage, spark))


def stage_main(stage_run, argv: list[str] | None = None) -> None:
    """Entry point of ``spark-submit jobs/<stage>.py --config FILE``."""
    parser = argparse.ArgumentParser(description=stage_run.__module__)
    parser.add_argument("--config", required=True, help="framelake YAML config (local or s3://)")
    args = parser.parse_args(argv)
    context = Context.create(load_config(args.config))
    print(stage_run(context).summary())


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
