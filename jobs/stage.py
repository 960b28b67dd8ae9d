"""What every stage shares.

- ``Stage``: a stage's work (``execute``) timed into a ``StageResult``.
- ``ArrowTask`` and ``map_tasks``: the shape of a stage's executor work, a ``mapInArrow``
  function over task numbers, so each task gets exactly its work items whatever Spark's
  partitioning would deal.
- ``run_stage``: the one way a stage runs, from the CLI, ``spark-submit jobs/<stage>.py``
  (``stage_main``) and the notebooks alike: under the lake's run lock, shown in the progress,
  and rerun from the start after a Delta commit conflict.
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import pyarrow as pa

from framelake.config import load_config
from framelake.lake import CommitConflictError
from framelake.layout import check_layout
from framelake.lock import LakeConflictError, lake_lock
from framelake.progress import Progress
from framelake.runtime import Context
from udfs.schemas import to_spark_schema

# A stage that failed on a commit conflict is rerun from the start this many times more.
STAGE_CONFLICT_RERUNS = 2


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


class Stage:
    """One stage of the pipeline. Subclasses name it and implement ``execute``, which returns
    the stage's counts and, for the run record, its details (or None)."""

    name: ClassVar[str]

    def execute(self, ctx: Context) -> tuple[dict, dict | None]:
        raise NotImplementedError

    def __call__(self, ctx: Context) -> StageResult:
        started = time.time()
        counts, details = self.execute(ctx)
        return StageResult(self.name, counts, time.time() - started, details)


def freeze_worker_heap() -> None:
    """pyspark's worker daemon runs a full ``gc.collect()`` after each task
    (pyspark/daemon.py), which walks every object alive: with pyarrow, pandas and a boto3
    client loaded, tens of milliseconds a task. What is alive as a task starts (modules,
    clients, tokenizers: the previous collection just freed the rest) is moved to the
    permanent generation, so those collections walk only what later tasks make."""
    gc.freeze()


class ArrowTask:
    """A ``mapInArrow`` function: Arrow batches in, Arrow batches out (``process``), with the
    worker's heap frozen first (``freeze_worker_heap``)."""

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        freeze_worker_heap()
        yield from self.process(batches)

    def process(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError


class TaskNumbers(ArrowTask):
    """An ``ArrowTask`` over ``map_tasks``' task numbers: ``task(number)`` yields its batches."""

    def process(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for number in batch.column("id").to_pylist():
                yield from self.task(number)

    def task(self, number: int) -> Iterator[pa.RecordBatch]:
        raise NotImplementedError


def map_tasks(spark, count: int, function: ArrowTask, schema: pa.Schema):
    """``function`` over the task numbers ``0 .. count - 1``, one Spark task each, in order."""
    return spark.range(0, count, 1, count).mapInArrow(function, to_spark_schema(schema))


def run_stage(stage: Stage, ctx: Context, echo: Callable[[str], None] = print) -> StageResult:
    """``stage`` under the lake's run lock (re-entrant: a pipeline holds it across its
    stages), on a lake of this framelake's layout (``framelake.layout``), shown in the
    progress, rerun on a commit conflict; its summary is echoed."""
    with lake_lock(ctx.storage, ctx.lake.root) as lock:
        lock.check()
        check_layout(ctx.lake)
        with ctx.progress.stage(stage.name):
            result = rerun_on_commit_conflict(stage, ctx, echo)
    echo(result.summary())
    return result


def rerun_on_commit_conflict(stage: Stage, ctx: Context, echo: Callable[[str], None] = print) -> StageResult:
    """``stage(ctx)``, rerun when a Delta commit conflicts. Under the lake lock no other
    framelake run writes; ``Lake.commit`` and ``Lake.delete`` already settle this run's own
    commits whose response the store lost. What still conflicts is left to a stage rerun, which
    is a resume: it reads what was committed and does the rest. A conflict that persists is
    another writer's, and stops the run with that message."""
    for _ in range(STAGE_CONFLICT_RERUNS + 1):
        try:
            return stage(ctx)
        except CommitConflictError as err:
            conflict = err
            echo(f"[{stage.name}] Delta commit conflict, rerunning the stage: {str(err).splitlines()[0]}")
    raise LakeConflictError(
        f"stage {stage.name}: Delta commits conflicted {STAGE_CONFLICT_RERUNS + 1} times in a row: another writer "
        f"is changing tables under {ctx.lake.root} (framelake runs hold {ctx.lake.root}/_locks/run.json; other "
        f"tools do not); rerun when it is done. Last conflict: {str(conflict).splitlines()[0]}") from conflict


def context_from_args(description: str, argv: list[str] | None = None) -> Context:
    """The context of a ``spark-submit jobs/<module>.py --config FILE`` run."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True, help="framelake YAML config (local or s3://)")
    args = parser.parse_args(argv)
    return Context.create(load_config(args.config), progress=Progress(sys.stdout))


def stage_main(stage: Stage, argv: list[str] | None = None) -> None:
    """Entry point of ``spark-submit jobs/<stage>.py --config FILE``."""
    run_stage(stage, context_from_args(f"framelake {stage.name}", argv))
