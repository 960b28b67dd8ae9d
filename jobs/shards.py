"""Stage 4: training shards per model and format, a ``shards`` table and ``manifest.json``.

The samples a model keeps (``token_lengths.kept``) are assigned to shards in Spark, with no
per-sample data on the driver: contiguous runs of the shard order (sample id, or token length
with ``length_order: group``), balanced by samples or by bytes. Executors write whole shards,
in every format, each atomically (temporary name, then rename or a single PUT). A (model,
format)'s ``manifest.json`` is written after its shards, then files it does not list are
removed. A model whose fingerprint (its settings and a digest of its input rows) is the one
its manifests carry keeps its shards as they are; the ``shards`` table is written only when
its rows change.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict

import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from framelake.config import Config, ShardSettings
from framelake.failpoints import failpoint
from framelake.runtime import Context
from framelake.storage import Storage
from jobs.sample_frames import rows_digest, samples_with_frames, tokens_inputs_digest
from jobs.stage import ArrowTask, Stage, stage_main
from udfs.fingerprint import fingerprint
from udfs.schemas import SHARDS, to_spark_schema
from udfs.selection import select_frames
from udfs.shards import MANIFEST_NAME, get_format, known_formats, manifest_json, shard_dir, shard_name
from udfs.token_lengths import ModelProfile


class WriteShards(ArrowTask):
    """Rows sorted by shard in, each shard written in every format, its ``shards`` rows out."""

    def __init__(self, model: str, settings: ShardSettings, storage: Storage, lake_root: str):
        self.model = model
        self.settings = settings
        self.storage = storage
        self.lake_root = lake_root

    def process(self, batches):
        rows = (row for batch in batches for row in batch.to_pylist())
        for shard_index, shard_rows in itertools.groupby(rows, key=lambda r: r["shard_index"]):
            samples = [self.sample_of(row) for row in shard_rows]
            written = [out for fmt in self.settings.formats for out in self.write(fmt, shard_index, samples)]
            failpoint("shards.after_first_shard")
            yield pa.RecordBatch.from_pylist(written, schema=SHARDS)

    def sample_of(self, row: dict) -> tuple[dict, list[list[dict]]]:
        """The row and its frames as formats take them: the frames the tokens stage counted (same
        rule, same budget), and those of the in-context examples' media, paths from the frame root."""
        def with_paths(frames):
            return [{**f, "path": self.frame_path(f["uri"])} for f in frames or []]

        examples = [{**item, "frames": with_paths(item["frames"])} for item in row["in_context_frames"]]
        selected = select_frames(row["media_frames"], row["frame_budget"])
        return {**row, "in_context_frames": examples}, [with_paths(frames) for frames in selected]

    def frame_path(self, uri: str) -> str:
        if not uri.startswith(self.lake_root + "/"):
            raise ValueError(f"frame {uri} is not under the lake {self.lake_root}")
        relative = uri[len(self.lake_root) + 1:]
        root = self.settings.frame_root
        return f"{root.rstrip('/')}/{relative}" if root else relative

    def read_frame(self, frame: dict) -> bytes:
        return self.storage.read_bytes(frame["uri"])

    def write(self, fmt: str, shard_index: int, samples: list) -> list[dict]:
        uri = f"{self.lake_root}/shards/{shard_name(self.model, fmt, shard_index)}"
        tokens = sum(row["total_tokens"] for row, _ in samples)
        try:
            files = get_format(fmt, self.settings).write(uri, samples, self.storage.writer, self.read_frame)
        except ValueError as err:  # the tokens stage checked every format: its table is out of date
            raise RuntimeError(f"{uri}: {err}; token_lengths predates these samples or frames, "
                               "run the tokens stage again") from err
        # The file that counts the shard's samples (the first of several) counts their tokens too.
        return [{"model": self.model, "format": fmt, "shard_path": f.uri, "samples": f.samples, "bytes": f.bytes,
                 "token_sum": tokens if f.samples else 0, "sha256": f.sha256} for f in files]


def assign_shards(kept: DataFrame, settings: ShardSettings) -> DataFrame:
    """``(sample_id, shard_index)`` for ``kept`` rows (``sample_id``, ``total_tokens``,
    ``payload_bytes``): consecutive runs of the shard order, numbered from 0 without gaps.

    With ``n = max(1, ceil(total weight / target))`` shards, a sample goes to shard
    ``floor(n * (2 * before + weight) / (2 * total))``, where ``before`` is the weight ahead of
    it: its weight's midpoint picks the shard, so shards differ by at most one sample (samples)
    or exceed ``total / n`` by less than one sample (bytes). ``before`` is a prefix sum computed
    per bucket of the order (the first id characters, or the token length), plus the weights of
    earlier buckets: only bucket totals (at most a few thousand rows) meet in one partition.
    """
    grouped = settings.length_order == "group"
    by_bytes = settings.balance == "bytes"
    order = ["total_tokens", "sample_id"] if grouped else ["sample_id"]
    target = settings.bytes_per_shard if by_bytes else settings.samples_per_shard
    items = kept.select(
        "sample_id",
        *order[:-1],
        (F.col("total_tokens") if grouped else F.substring("sample_id", 1, 3)).alias("bucket"),
        (F.col("payload_bytes") if by_bytes else F.lit(1)).cast("long").alias("weight"),
    )
    buckets = items.groupBy("bucket").agg(F.sum("weight").alias("bucket_weight"))
    total = buckets.agg(F.sum("bucket_weight")).first()[0]
    if not total:
        return items.select("sample_id", F.lit(0).alias("shard_index")).limit(0)
    count = max(1, -(-total // target))
    earlier = Window.orderBy("bucket").rowsBetween(Window.unboundedPreceding, -1)
    offsets = buckets.select("bucket", F.coalesce(F.sum("bucket_weight").over(earlier), F.lit(0)).alias("offset"))
    ahead = Window.partitionBy("bucket").orderBy(*order).rowsBetween(Window.unboundedPreceding, -1)
    assigned = (
        items.join(F.broadcast(offsets), "bucket")
        .withColumn("before", F.col("offset") + F.coalesce(F.sum("weight").over(ahead), F.lit(0)))
        .select("sample_id", F.least(F.lit(count - 1), F.expr(f"({count} * (2 * before + weight)) div {2 * total}"))
                .alias("planned"))
    )
    # A sample heavier than a shard leaves planned shards empty: number the used ones densely.
    used = assigned.select("planned").distinct().withColumn(
        "shard_index", (F.row_number().over(Window.orderBy("planned")) - 1).cast("int")
    )
    return assigned.join(F.broadcast(used), "planned").select("sample_id", "shard_index")


def shard_fingerprint(config: Config, profile: ModelProfile, rows: DataFrame) -> str:
    return fingerprint({"model": profile.as_dict(), "shards": asdict(config.shards), "rows": rows_digest(rows)})


def check_token_lengths(ctx: Context, lengths: DataFrame, inputs: list) -> None:
    """Refuse to shard from ``token_lengths`` rows made for other samples or settings (``inputs``:
    ``jobs.sample_frames.tokens_inputs_digest`` of the rows the tokens stage read)."""
    samples = ctx.lake.read("samples").count()
    made = {(r["model"], r["settings"]): r["count"] for r in lengths.groupBy("model", "settings").count().collect()}
    for profile in ctx.config.models:
        name, expected = profile.name, ctx.config.tokens_fingerprint(profile, inputs)
        rows = {settings: count for (model, settings), count in made.items() if model == name}
        if rows != ({expected: samples} if samples else {}):
            raise RuntimeError(
                f"token_lengths of model {name!r} was not made from the current samples and settings "
                f"({sum(rows.values())} rows for {samples} samples); run the tokens stage first"
            )


def previous_rows(ctx: Context, model: str, formats: tuple[str, ...], fingerprint: str) -> list[dict] | None:
    """The shard rows of an earlier emit of ``model`` with this fingerprint whose files are all
    there, or None when it must be written."""
    rows = []
    for fmt in formats:
        folder = ctx.lake.uri("shards", shard_dir(model, fmt))
        manifest_uri = f"{folder}/{MANIFEST_NAME}"
        if not ctx.storage.exists(manifest_uri):
            return None
        manifest = json.loads(ctx.storage.read_bytes(manifest_uri))
        present = set(ctx.storage.list(folder))
        missing = any(r["shard_path"] not in present for r in manifest["shards"])
        if manifest["config_fingerprint"] != fingerprint or missing:
            return None
        rows += manifest["shards"]
    return rows


def write_shards(ctx: Context, model: str, rows: DataFrame, kept: DataFrame) -> list[dict]:
    settings = ctx.config.shards
    assignment = assign_shards(kept, settings).persist()
    try:
        last = assignment.agg(F.max("shard_index")).first()[0]
        if last is None:
            return []
        order = ["sample_id"] if settings.length_order == "none" else ["total_tokens", "sample_id"]
        written = (
            rows.join(assignment, "sample_id")
            .repartition(min(last + 1, 64), "shard_index")
            .sortWithinPartitions("shard_index", *order)
            .mapInArrow(WriteShards(model, settings, ctx.storage, ctx.lake.root), to_spark_schema(SHARDS))
            .collect()
        )
    finally:
        assignment.unpersist()
    return [row.asDict() for row in written]


def publish(ctx: Context, model: str, written: list[dict], fingerprint: str) -> None:
    """Per format, ``manifest.json`` after its shards, then the files it does not list removed.
    Formats no longer configured lose their manifest first, then their files."""
    for fmt in known_formats():
        folder = ctx.lake.uri("shards", shard_dir(model, fmt))
        manifest_uri = f"{folder}/{MANIFEST_NAME}"
        if fmt in ctx.config.shards.formats:
            group = [r for r in written if r["format"] == fmt]
            text = manifest_json(group, model=model, fmt=fmt, config_fingerprint=fingerprint)
            ctx.storage.write_bytes(manifest_uri, text.encode("utf-8"))
            current = {r["shard_path"] for r in group} | {manifest_uri}
        else:
            ctx.storage.delete(manifest_uri)
            current = set()
        for stale in ctx.storage.list(folder):
            if stale not in current:
                ctx.storage.delete(stale)


class ShardsStage(Stage):
    name = "shards"

    def execute(self, ctx: Context) -> tuple[dict, dict]:
        return emit_shards(ctx)


def emit_shards(ctx: Context) -> tuple[dict, dict]:
    """Shards of every model whose inputs or settings changed; the counts, and the models rewritten."""
    config = ctx.config
    lengths = ctx.lake.read("token_lengths")
    inputs = samples_with_frames(ctx.lake).select(
        "sample_id", "source", "media_type", "media", "conversations", "in_context", "media_frames",
        "in_context_frames",
    ).persist()
    shard_rows, rewritten = [], []
    ctx.progress.total(len(config.models), "models")
    try:
        check_token_lengths(ctx, lengths, tokens_inputs_digest(ctx.lake, inputs))
        for profile in config.models:
            model = profile.name
            kept = lengths.where((F.col("model") == model) & F.col("kept")).select(
                "sample_id", "total_tokens", "frame_budget", "payload_bytes"
            )
            rows = inputs.join(kept, "sample_id")
            settings = shard_fingerprint(config, profile, rows)
            model_rows = previous_rows(ctx, model, config.shards.formats, settings)
            if model_rows is None:
                model_rows = write_shards(ctx, model, rows, kept)
                publish(ctx, model, model_rows, settings)
                rewritten.append(model)
            shard_rows += model_rows
            ctx.progress.advance(1)
        if not (ctx.lake.exists("shards") and _same_rows(ctx.lake.read_arrow("shards").to_pylist(), shard_rows)):
            ctx.lake.write("shards", ctx.spark.createDataFrame(shard_rows, to_spark_schema(SHARDS)))
    finally:
        inputs.unpersist()
    counts = {"shards": len(shard_rows), "samples": sum(r["samples"] for r in shard_rows),
              "models_rewritten": len(rewritten), "models_unchanged": len(config.models) - len(rewritten)}
    return counts, {"rewritten": rewritten}


def _same_rows(table_rows: list[dict], rows: list[dict]) -> bool:
    def values(row_list):
        return sorted(tuple(row[name] for name in SHARDS.names) for row in row_list)

    return values(table_rows) == values(rows)


stage = ShardsStage()

if __name__ == "__main__":
    stage_main(stage)
