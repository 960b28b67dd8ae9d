"""Stage 4: training shards per model and format, a ``shards`` table and ``manifest.json``.

Samples that fit a model are planned into balanced shards on the driver, then each executor
writes whole shards (atomically: temp name, then rename or a single PUT). The manifest of a
(model, format) is written after all of its shards, and shards of an earlier run that the new
manifest does not list are removed.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import asdict

import pyarrow as pa
from pyspark.sql import functions as F

from framelake.config import Config
from framelake.runtime import Context, StageResult, stage_main
from framelake.storage import Storage
from jobs.sample_frames import samples_with_frames
from udfs.schemas import SHARDS, to_spark_schema
from udfs.selection import select_frames
from udfs.shards import (
    MANIFEST_NAME, HashingWriter, WebDatasetShardWriter, manifest_json, plan_shards, shard_dir,
    shard_name, to_llava, to_minicpmv, write_json_shard,
)
from udfs.token_lengths import ModelProfile

JSON_FORMATTERS = {"minicpmv": to_minicpmv, "llava": to_llava}
# One row per shard written, or per sample a format could not express (``reason`` set).
WRITTEN = pa.schema([*SHARDS, pa.field("sample_id", pa.string()), pa.field("reason", pa.string())])


class WriteShards:
    """mapInArrow function: rows sorted by shard, each shard written in every format."""

    def __init__(self, profile: dict, formats: tuple[str, ...], storage: Storage, lake_root: str, frame_root: str):
        self.profile = profile
        self.formats = formats
        self.storage = storage
        self.lake_root = lake_root
        self.frame_root = frame_root

    def __call__(self, batches):
        profile = ModelProfile.from_dict(self.profile)
        rows = (row for batch in batches for row in batch.to_pylist())
        for shard_index, shard_rows in itertools.groupby(rows, key=lambda r: r["shard_index"]):
            samples = [(row, self.frames_of(row, profile.max_frames)) for row in shard_rows]
            out = [self.write(profile.name, fmt, shard_index, samples) for fmt in self.formats]
            yield pa.RecordBatch.from_pylist([r for rows_ in out for r in rows_], schema=WRITTEN)

    def frames_of(self, row: dict, max_frames: int) -> list[list[dict]]:
        """The same frames the tokens stage counted, with paths relative to the frame root."""
        selected = select_frames(row["media_frames"], max_frames)
        return [[{**f, "path": self.frame_path(f["uri"])} for f in frames] for frames in selected]

    def frame_path(self, uri: str) -> str:
        relative = uri[len(self.lake_root) + 1:]
        return f"{self.frame_root.rstrip('/')}/{relative}" if self.frame_root else relative

    def write(self, model: str, fmt: str, shard_index: int, samples: list) -> list[dict]:
        uri = f"{self.lake_root}/shards/{shard_name(model, fmt, shard_index)}"
        dropped, kept_tokens = [], 0
        with self.storage.writer(uri) as raw:
            out = HashingWriter(raw)
            if fmt == "webdataset":
                with WebDatasetShardWriter(out) as tar:
                    for row, frames in samples:
                        try:
                            tar.write(row, frames, lambda frame: self.storage.read_bytes(frame["uri"]))
                            kept_tokens += row["total_tokens"]
                        except ValueError as err:
                            dropped.append((row["sample_id"], str(err)))
                    n_samples = tar.samples
            else:
                records = []
                for row, frames in samples:
                    try:
                        records.append(JSON_FORMATTERS[fmt](row, frames))
                        kept_tokens += row["total_tokens"]
                    except ValueError as err:
                        dropped.append((row["sample_id"], str(err)))
                n_samples = write_json_shard(records, out)
        written = {"model": model, "format": fmt, "shard_path": uri, "samples": n_samples,
                   "bytes": out.bytes, "token_sum": kept_tokens, "sha256": out.sha256,
                   "sample_id": None, "reason": None}
        return [written] + [
            {**dict.fromkeys(WRITTEN.names), "model": model, "format": fmt, "sample_id": sample_id,
             "reason": f"not in {fmt} shards: {reason}"}
            for sample_id, reason in dropped
        ]


def config_fingerprint(config: Config) -> str:
    settings = {"frames": asdict(config.frames), "models": config.models, "shards": asdict(config.shards)}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run(ctx: Context) -> StageResult:
    started = time.time()
    config = ctx.config
    lengths = ctx.lake.read("token_lengths")
    inputs = samples_with_frames(ctx.lake).select(
        "sample_id", "source", "media_type", "media", "conversations", "in_context", "media_frames"
    ).persist()
    written, dropped = [], []
    try:
        for profile_dict, profile in zip(config.models, config.model_profiles()):
            fitting = lengths.where((F.col("model") == profile.name) & F.col("fits"))
            order = fitting.select("sample_id", "total_tokens").orderBy("sample_id").collect()
            if not order:
                continue
            plan = plan_shards([(row["sample_id"], 1) for row in order], config.shards.samples_per_shard)
            assignment = ctx.spark.createDataFrame(
                [(sample_id, index) for index, shard in enumerate(plan) for sample_id in shard],
                "sample_id string, shard_index int",
            )
            rows = (
                inputs.join(assignment, "sample_id")
                .join(fitting.select("sample_id", "total_tokens"), "sample_id")
                .repartition(min(len(plan), 64), "shard_index")
                .sortWithinPartitions("shard_index", "sample_id")
                .mapInArrow(
                    WriteShards(profile_dict, config.shards.formats, ctx.storage, ctx.lake.root, config.shards.frame_root),
                    to_spark_schema(WRITTEN),
                )
                .collect()
            )
            for row in rows:
                (dropped if row["reason"] else written).append(row.asDict())
        shard_rows = [{k: row[k] for k in SHARDS.names} for row in written]
        write_manifests(ctx, shard_rows, config_fingerprint(config))
        ctx.lake.write("shards", ctx.spark.createDataFrame(shard_rows, to_spark_schema(SHARDS)))
        if dropped:
            record_drops(ctx, dropped)
    finally:
        inputs.unpersist()
    counts = {"shards": len(written), "samples": sum(r["samples"] for r in written), "dropped": len(dropped)}
    return StageResult("shards", counts, time.time() - started)


def write_manifests(ctx: Context, shard_rows: list[dict], fingerprint: str) -> None:
    """``manifest.json`` per (model, format), written after its shards; stale shards removed."""
    for (model, fmt), group in itertools.groupby(
        sorted(shard_rows, key=lambda r: (r["model"], r["format"], r["shard_path"])),
        key=lambda r: (r["model"], r["format"]),
    ):
        group = list(group)
        folder = ctx.lake.uri("shards", shard_dir(model, fmt))
        text = manifest_json(group, model=model, fmt=fmt, config_fingerprint=fingerprint)
        ctx.storage.write_bytes(f"{folder}/{MANIFEST_NAME}", text.encode("utf-8"))
        current = {r["shard_path"] for r in group} | {f"{folder}/{MANIFEST_NAME}"}
        for stale in ctx.storage.list(folder):
            if stale not in current:
                ctx.storage.delete(stale)


def record_drops(ctx: Context, dropped: list[dict]) -> None:
    """Give samples a format could not express their reason in ``token_lengths``."""
    reasons = ctx.spark.createDataFrame(
        [(r["sample_id"], r["model"], r["reason"]) for r in dropped], "sample_id string, model string, drop string"
    ).groupBy("sample_id", "model").agg(F.concat_ws("; ", F.collect_list("drop")).alias("drop"))
    lengths = ctx.lake.read("token_lengths").join(reasons, ["sample_id", "model"], "left")
    ctx.lake.write(
        "token_lengths",
        lengths.withColumn("reason", F.coalesce("reason", "drop")).drop("drop"),
    )


if __name__ == "__main__":
    stage_main(run)
