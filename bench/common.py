"""Helpers shared by the benchmarks: timing, peak memory, a Spark session."""
from __future__ import annotations

import os
import resource
import sys
import time
from contextlib import contextmanager


@contextmanager
def timed(label: str, into: dict):
    """Store the wall time of the block under ``into[label]`` and print it."""
    started = time.perf_counter()
    yield
    into[label] = time.perf_counter() - started
    print(f"   {label}: {into[label]:.2f} s", flush=True)


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children), in MiB."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024


def local_spark(cores: int = 2, **conf):
    """A fresh local SparkSession with ``cores`` executor threads."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName("framelake-bench")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(2 * cores))
    )
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark
