"""Helpers shared by the benchmarks: timing, peak memory, a Spark session."""
from __future__ import annotations

import resource
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
    """A fresh local SparkSession with ``cores`` executor threads, made as framelake makes its own."""
    from framelake.config import SparkSettings
    from framelake.runtime import get_spark

    settings = SparkSettings(master=f"local[{cores}]", conf={
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": str(2 * cores), **conf})
    spark = get_spark(settings, app_name="framelake-bench")
    spark.sparkContext.setLogLevel("ERROR")
    return spark
