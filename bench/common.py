"""Helpers shared by the benchmarks: timing, peak memory, a Spark session."""
from __future__ import annotations

import os
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


@contextmanager
def cpu_budget(cpus: int):
    """Run the block on ``cpus`` of this process's CPUs, as a container or a cgroup limits an
    executor: given fewer CPUs than the machine has, a run cannot borrow the rest (ffmpeg's
    helper threads and the JVM's would run there for free). Every thread of this process is
    held to them, and so is every process it starts; ``include(pid)`` holds one started before
    (pyspark keeps its JVM from one session to the next). All get every CPU back at the end."""
    allowed = sorted(os.sched_getaffinity(0))
    if cpus > len(allowed):
        raise ValueError(f"{cpus} CPUs asked for, {len(allowed)} available")
    held: list[int] = []

    def include(pid: int) -> None:
        _set_affinity(pid, allowed[:cpus])
        held.append(pid)

    include(os.getpid())
    try:
        yield include
    finally:
        for pid in held:
            _set_affinity(pid, allowed)


def _set_affinity(pid: int, cpus: list[int]) -> None:
    """The CPUs of every thread of ``pid`` (a thread's new threads and processes inherit them)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:  # the thread ended meanwhile
            pass


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident memory of this process (or of its finished children), in MiB."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_maxrss / 1024


def local_spark(cores: int = 2, delta_spark: bool = False, **conf):
    """A fresh local SparkSession with ``cores`` executor threads, made as framelake makes its
    own (with Delta's jars and extensions for the delta-spark engine)."""
    from framelake.config import SparkSettings
    from framelake.runtime import get_spark

    settings = SparkSettings(master=f"local[{cores}]", conf={
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": str(2 * cores), **conf})
    spark = get_spark(settings, app_name="framelake-bench", delta_spark=delta_spark)
    spark.sparkContext.setLogLevel("ERROR")
    return spark
