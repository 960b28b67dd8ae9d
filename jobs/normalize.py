"""Stage 1: every source format into one ``samples`` table, plus ``rejects`` with reasons.

A run normalizes only the units (a file, or the files of a MIMIC-IT task) that are new or
changed since the last run, as the ``source_files`` table knows them
(``udfs.normalize.plan_run``): the rows earlier runs left for them, and for removed files, are
deleted and their new rows appended, and ``source_files`` is written last. When nothing
changed, nothing is written.

Each unit is one task. A file over ``normalize.split_bytes`` is first scanned on an executor
for record boundaries, then read in splits, one task each; sample ids repeated across the
splits of a file are numbered here as the unsplit read numbers them. Count in = samples +
rejects, per source.
"""
from __future__ import annotations

import contextlib
import hashlib

import pyarrow as pa
from pyspark.sql import Window
from pyspark.sql import functions as F

from framelake.failpoints import failpoint
from framelake.runtime import Context
from framelake.storage import Storage
from jobs.stage import Stage, TaskNumbers, map_tasks, stage_main
from udfs.adapters import NormalizeContext, SourceSpec, get_adapter
from udfs.adapters.readers import Split, scan_splits
from udfs.normalize import RunPlan, WorkUnit, normalize_unit, plan_run
from udfs.schemas import REJECTS, SAMPLES, SOURCE_FILES, to_spark_schema
from udfs.sql import sql_in

# Samples and rejects travel together out of one pass; ``reason`` is null for samples.
NORMALIZED = pa.schema([*SAMPLES, pa.field("reason", pa.string())])
# The splits of the big unit number ``unit``.
SPLITS = pa.schema(
    [("unit", pa.int64()), ("offset", pa.int64()), ("first_index", pa.int64()), ("count", pa.int64()),
     ("layout", pa.string())]
)
_BATCH_ROWS = 1024


class NormalizeUnits(TaskNumbers):
    """Work unit numbers in, their normalized rows out."""

    def __init__(self, units: list[WorkUnit], specs: list[SourceSpec], storage: Storage, inline_root: str):
        self.units = units
        self.specs = {spec.name: spec for spec in specs}
        self.storage = storage
        self.inline_root = inline_root

    def put_inline(self, data: bytes, ext: str) -> str:
        """Store an embedded image once, named by its content."""
        digest = hashlib.sha256(data).hexdigest()
        uri = f"{self.inline_root}/{digest[:2]}/{digest}.{ext}"
        if not self.storage.exists(uri):
            self.storage.write_bytes(uri, data)
        return uri

    def put_object(self, relative_path: str, data: bytes) -> str:
        """Store an object an adapter made (rendered pages) at ``<lake>/media/<relative_path>``."""
        media_root = self.inline_root.rsplit("/", 1)[0]  # inline_root is <lake>/media/inline
        uri = f"{media_root}/{relative_path}"
        self.storage.write_bytes(uri, data)
        return uri

    def task(self, number: int):
        unit = self.units[number]
        spec = self.specs[unit.source]
        ctx = NormalizeContext(spec=spec, open_binary=self.storage.open_read, put_inline=self.put_inline,
                               put_object=self.put_object)
        rows = []
        for _, row in normalize_unit(get_adapter(spec.format), list(unit.files), ctx, unit.split):
            rows.append(row)
            if len(rows) >= _BATCH_ROWS:
                yield normalized_batch(rows)
                rows = []
        if rows:
            yield normalized_batch(rows)


def normalized_batch(rows: list[dict]) -> pa.RecordBatch:
    """Sample and reject rows as one ``NORMALIZED`` batch, built column by column (faster than
    row by row); a reject has no sample fields, a sample no reason: they are null."""
    return pa.RecordBatch.from_arrays(
        [pa.array([row.get(field.name) for row in rows], field.type) for field in NORMALIZED], schema=NORMALIZED
    )


class ScanSplits(TaskNumbers):
    """Numbers of big units in, their splits out. A file the scan cannot read gets no splits:
    it is read whole, and rejected with the reason."""

    def __init__(self, units: list[WorkUnit], storage: Storage, split_bytes: int):
        self.units = units
        self.storage = storage
        self.split_bytes = split_bytes

    def task(self, number: int):
        try:
            with contextlib.closing(self.storage.open_read(self.units[number].files[0])) as stream:
                splits = scan_splits(stream, self.split_bytes)
        except Exception:  # noqa: BLE001 - the unsplit read rejects the file with the reason
            return
        yield pa.RecordBatch.from_pylist([{"unit": number, **vars(s)} for s in splits], schema=SPLITS)


def split_big_units(ctx: Context, units: list[WorkUnit]) -> list[WorkUnit]:
    """``units`` with each file over ``split_bytes`` of a splittable format replaced by its
    splits (not compressed files: ``Adapter.can_split``), biggest first (tasks start in this
    order)."""
    split_bytes = ctx.config.normalize.split_bytes
    formats = {spec.name: spec.format for spec in ctx.config.sources}
    result, big = [], []
    for unit in units:
        splittable = unit.size > split_bytes and get_adapter(formats[unit.source]).can_split(unit.files[0])
        (big if splittable else result).append(unit)
    if big:
        scanned: dict[int, list] = {}
        for row in map_tasks(ctx.spark, len(big), ScanSplits(big, ctx.storage, split_bytes), SPLITS).collect():
            scanned.setdefault(row["unit"], []).append(row)
        for number, unit in enumerate(big):
            rows = sorted(scanned.get(number, []), key=lambda row: row["offset"])
            if len(rows) < 2:
                result.append(unit)
                continue
            ends = [row["offset"] for row in rows[1:]] + [unit.size]
            for row, end in zip(rows, ends):
                split = Split(row["offset"], row["first_index"], row["count"], row["layout"])
                result.append(WorkUnit(unit.source, unit.files, end - row["offset"], split))
    return sorted(result, key=lambda u: -u.size)


def number_repeated_ids(normalized, split_files: list[str]):
    """Sample ids repeated within a file read in splits: each later occurrence gets
    ``udfs.normalize.duplicate_id`` of its number, as the unsplit read gives it."""
    in_split_files = F.col("reason").isNull() & F.col("source_file").isin(split_files)
    repeated = (
        normalized.where(in_split_files).groupBy("sample_id").count().where(F.col("count") > 1).select("sample_id")
    )
    if repeated.isEmpty():
        return normalized
    occurrence = F.row_number().over(Window.partitionBy("sample_id").orderBy("record_index")) - 1
    duplicate_id = F.substring(
        F.sha2(F.concat_ws("\x1f", F.lit("duplicate"), F.col("sample_id"), F.col("occurrence").cast("string")), 256),
        1, 32,
    )
    renumbered = (
        normalized.where(in_split_files).join(repeated, "sample_id", "left_semi")
        .withColumn("occurrence", occurrence)
        .withColumn("sample_id", F.when(F.col("occurrence") > 0, duplicate_id).otherwise(F.col("sample_id")))
        .drop("occurrence")
    )
    others = normalized.where(~in_split_files).unionByName(
        normalized.where(in_split_files).join(repeated, "sample_id", "left_anti")
    )
    return others.unionByName(renumbered)


def apply_where(normalized, specs):
    """Turn samples that fail their source's ``where:`` predicate into rejects."""
    reason = F.col("reason")
    for spec in specs:
        predicate = spec.options.get("where")
        if predicate:
            excluded = reason.isNull() & (F.col("source") == spec.name) & ~F.coalesce(F.expr(predicate), F.lit(False))
            reason = F.when(excluded, F.lit(f"excluded by where: {predicate}")).otherwise(reason)
    return normalized.withColumn("reason", reason)


def replaced_rows(plan: RunPlan) -> str | None:
    """SQL predicate of the rows earlier runs left that this run replaces, or None."""
    clauses = [sql_in("source", [source]) for source in plan.replaced_sources]
    clauses += [
        f"({sql_in('source', [source])} AND {sql_in('source_file', files)})" for source, files in plan.replaced.items()
    ]
    return " OR ".join(clauses) or None


def write_normalized(ctx: Context, units: list[WorkUnit], mode: str) -> list:
    """Normalize ``units`` into ``samples`` and ``rejects``; returns their rows in, samples and
    unreadable files (record_index null: tried again next run) per unit."""
    function = NormalizeUnits(units, list(ctx.config.sources), ctx.storage, ctx.lake.uri("media", "inline"))
    # Both tables and the counts come out of one normalization.
    normalized = map_tasks(ctx.spark, len(units), function, NORMALIZED).persist()
    try:
        split_files = sorted({u.files[0] for u in units if u.split is not None})
        numbered = number_repeated_ids(normalized, split_files) if split_files else normalized
        rows = apply_where(numbered, ctx.config.sources)
        ctx.lake.write("samples", rows.where(F.col("reason").isNull()).select(*SAMPLES.names), mode)
        failpoint("normalize.after_samples")
        rejects = rows.where(F.col("reason").isNotNull()).withColumn("stage", F.lit("normalize"))
        ctx.lake.write("rejects", rejects.select(*REJECTS.names), mode)
        return rows.groupBy("source", "source_file").agg(
            F.count(F.lit(1)).alias("in"),
            F.count_if(F.col("reason").isNull()).alias("samples"),
            F.count_if(F.col("reason").isNotNull() & F.col("record_index").isNull()).alias("unread"),
        ).collect()
    finally:
        normalized.unpersist()


class NormalizeStage(Stage):
    name = "normalize"

    def execute(self, ctx: Context) -> tuple[dict, dict]:
        return normalize(ctx)


def normalize(ctx: Context) -> tuple[dict, dict]:
    """Normalize what changed; the counts of this run and the rows per source in the tables."""
    sources = ctx.config.sources
    listings = {spec.name: ctx.storage.list_info(spec.annotations) for spec in sources}
    for i, spec in enumerate(sources):
        if not listings[spec.name]:
            raise FileNotFoundError(f"sources[{i}].annotations: no annotation files match {spec.annotations}")
    recorded = None  # no record (or no samples to keep): rebuild the tables
    if ctx.lake.exists("source_files") and ctx.lake.exists("samples"):
        recorded = [row.asDict() for row in ctx.lake.read("source_files").collect()]
    plan = plan_run(sources, listings, recorded)
    units = split_big_units(ctx, plan.units)
    ctx.progress.total(len(units), "units")
    mode = "overwrite" if plan.first else "append"
    replaced = None if plan.first else replaced_rows(plan)
    if replaced:
        for name in ("samples", "rejects"):
            ctx.lake.delete(name, replaced)
    per_unit = write_normalized(ctx, units, mode) if units else []
    done = {key: sum(row[key] for row in per_unit) for key in ("in", "samples")}
    done["rejects"] = done["in"] - done["samples"]
    unread = {(row["source"], row["source_file"]) for row in per_unit if row["unread"]}
    if units or replaced:
        recorded_files = [f for f in plan.files if (f["source"], f["source_file"]) not in unread]
        files_df = ctx.spark.createDataFrame(recorded_files, to_spark_schema(SOURCE_FILES))
        ctx.lake.write("source_files", files_df, "overwrite")
    totals = {spec.name: {"in": 0, "samples": 0, "rejects": 0} for spec in sources}
    # The generate stage's rows (format "generate:<recipe>") are its own to count.
    normalized = ~F.col("format").startswith("generate:")
    in_tables = ctx.lake.read("samples").where(normalized).select("source", F.lit("samples").alias("table"))
    in_tables = in_tables.unionByName(
        ctx.lake.read("rejects").where(normalized).select("source", F.lit("rejects").alias("table")))
    for row in in_tables.groupBy("source", "table").count().collect():
        totals[row["source"]][row["table"]] = row["count"]
        totals[row["source"]]["in"] += row["count"]
    return {"units": len(units), "kept": plan.kept, **done}, {"sources": totals, "notes": note_counts(ctx)}


def note_counts(ctx: Context) -> dict[str, dict[str, int]]:
    """Per source, what the samples' ``notes`` add up to, by kind (``schemas.NOTE``): e.g. the
    MIMIC-IT in-context examples dropped because no instruction has their id."""
    notes = ctx.lake.read("samples").select("source", F.explode("notes").alias("note"))
    counts: dict[str, dict[str, int]] = {}
    for row in notes.groupBy("source", "note.kind").agg(F.sum("note.count").alias("count")).collect():
        counts.setdefault(row["source"], {})[row["kind"]] = row["count"]
    return counts


stage = NormalizeStage()

if __name__ == "__main__":
    stage_main(stage)
