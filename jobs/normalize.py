"""Stage 1: every source format into one ``samples`` table, plus ``rejects`` with reasons.

Work units (a file, or the files of a MIMIC-IT task) are spread over executors, each streams
its unit through the source's adapter. Count in = samples + rejects, per source.
"""
from __future__ import annotations

import hashlib
import json
import time

import pyarrow as pa
from pyspark.sql import functions as F

from framelake.runtime import Context, StageResult, stage_main
from framelake.storage import Storage
from udfs.adapters import NormalizeContext, SourceSpec, get_adapter
from udfs.normalize import normalize_unit
from udfs.schemas import REJECTS, SAMPLES, to_spark_schema

# Samples and rejects travel together out of one pass; ``reason`` is null for samples.
NORMALIZED = pa.schema([*SAMPLES, pa.field("reason", pa.string())])
_BATCH_ROWS = 1024


class NormalizeUnits:
    """mapInArrow function: (source, unit) rows in, normalized rows out."""

    def __init__(self, specs: list[SourceSpec], storage: Storage, inline_root: str):
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

    def __call__(self, batches):
        rows = []
        for batch in batches:
            for source, unit in zip(batch.column("source").to_pylist(), batch.column("unit").to_pylist()):
                spec = self.specs[source]
                ctx = NormalizeContext(spec=spec, open_binary=self.storage.open_read, put_inline=self.put_inline)
                for kind, row in normalize_unit(get_adapter(spec.format), json.loads(unit), ctx):
                    rows.append(row if kind == "sample" else _reject_as_normalized(row))
                    if len(rows) >= _BATCH_ROWS:
                        yield pa.RecordBatch.from_pylist(rows, schema=NORMALIZED)
                        rows = []
        if rows:
            yield pa.RecordBatch.from_pylist(rows, schema=NORMALIZED)


def _reject_as_normalized(reject: dict) -> dict:
    return {name: reject.get(name) for name in NORMALIZED.names}


def plan_units(ctx: Context) -> list[tuple[str, str]]:
    """(source name, JSON list of file URIs) per work unit, listed on the driver."""
    units = []
    for spec in ctx.config.sources:
        files = ctx.storage.list(spec.annotations)
        for unit in get_adapter(spec.format).plan(files):
            units.append((spec.name, json.dumps(unit)))
    return units


def apply_where(normalized, specs):
    """Turn samples that fail their source's ``where:`` predicate into rejects."""
    reason = F.col("reason")
    for spec in specs:
        predicate = spec.options.get("where")
        if predicate:
            excluded = reason.isNull() & (F.col("source") == spec.name) & ~F.coalesce(F.expr(predicate), F.lit(False))
            reason = F.when(excluded, F.lit(f"excluded by where: {predicate}")).otherwise(reason)
    return normalized.withColumn("reason", reason)


def run(ctx: Context) -> StageResult:
    started = time.time()
    units = plan_units(ctx)
    if not units:
        raise FileNotFoundError("normalize: no annotation files matched any source's `annotations`")
    unit_df = ctx.spark.createDataFrame(units, "source string, unit string").repartition(len(units))
    normalized = unit_df.mapInArrow(
        NormalizeUnits(list(ctx.config.sources), ctx.storage, ctx.lake.uri("media", "inline")),
        to_spark_schema(NORMALIZED),
    )
    # Sample ids are unique by construction: source, file, and the record's key in its file.
    normalized = apply_where(normalized, ctx.config.sources).persist()
    try:
        samples = normalized.where(F.col("reason").isNull()).select(*SAMPLES.names)
        rejects = normalized.where(F.col("reason").isNotNull()).withColumn("stage", F.lit("normalize"))
        ctx.lake.write("samples", samples)
        ctx.lake.write("rejects", rejects.select(*REJECTS.names))
        per_source = {
            row["source"]: {"in": row["records"], "samples": row["samples"], "rejects": row["rejects"]}
            for row in normalized.groupBy("source").agg(
                F.count(F.lit(1)).alias("records"),
                F.count_if(F.col("reason").isNull()).alias("samples"),
                F.count_if(F.col("reason").isNotNull()).alias("rejects"),
            ).collect()
        }
    finally:
        normalized.unpersist()
    totals = {k: sum(s[k] for s in per_source.values()) for k in ("in", "samples", "rejects")}
    return StageResult("normalize", {"units": len(units), **totals}, time.time() - started, {"sources": per_source})


if __name__ == "__main__":
    stage_main(run)
