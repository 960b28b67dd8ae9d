"""Stage 3: exact token lengths of every sample for every model, and which samples each keeps.

Per model, a ``mapInArrow`` does the per-sample work of ``udfs.filters.assess`` (the tokenizer
is loaded once per Python worker): the frames used, text and visual tokens, T2Vid's filters,
the quality checks and the shard formats. Spark then applies the filters that compare samples:
exact duplicates, video-disjoint sources and the mixture. Every (sample, model) gets a row;
a sample not kept carries its reason, so kept + dropped = samples, per model.
"""
from __future__ import annotations

import functools
import hashlib
import json
import time
from dataclasses import asdict

import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from framelake.config import Config
from framelake.failpoints import failpoint
from framelake.runtime import Context, StageResult, freeze_worker_heap, stage_main
from jobs.sample_frames import samples_with_frames
from udfs.filters import FilterSettings, Mixture, assess
from udfs.schemas import TOKEN_LENGTHS, to_spark_schema
from udfs.token_lengths import ModelProfile
from udfs.tokenizers import load_counter


class CountTokens:
    """mapInArrow function: samples with frames in, one ``token_lengths`` row each out."""

    def __init__(self, profile: dict, filters: FilterSettings = FilterSettings(), formats: tuple[str, ...] = ()):
        self.profile = profile
        self.filters = filters
        self.formats = formats

    def __call__(self, batches):
        freeze_worker_heap()
        profile = ModelProfile.from_dict(self.profile)
        counter = load_counter(profile.tokenizer)
        for batch in batches:
            failpoint("tokens.map")
            rows = assess(profile, counter, self.filters, batch.to_pylist(), self.formats)
            if rows:
                yield pa.RecordBatch.from_pylist(rows, schema=TOKEN_LENGTHS)


def settings_fingerprint(config: Config, profile: dict) -> str:
    """What a model's ``token_lengths`` rows depend on besides the tables (its ``settings``)."""
    settings = {
        "model": profile,
        "filters": asdict(config.filters[profile["name"]]),
        "frames": asdict(config.frames),
        "formats": sorted(config.shards.formats),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def sample_identity(samples: DataFrame) -> DataFrame:
    """Per sample: ``source``, ``videos`` (URIs of its non-image media, clips of one file alike)
    and ``duplicate_of``: the smallest id among samples with the same media, conversations and
    in-context examples, when that is another sample."""
    content = F.sha2(F.to_json(F.struct(F.col("media.media_id"), "conversations", "in_context")), 256)
    first = F.min("sample_id").over(Window.partitionBy(content))
    return samples.select(
        "sample_id",
        "source",
        F.transform(F.filter("media", lambda m: m["kind"] != "image"), lambda m: m["uri"]).alias("videos"),
        F.when(first != F.col("sample_id"), first).alias("duplicate_of"),
    )


def _drop(rows: DataFrame, condition, reason) -> DataFrame:
    """Kept rows where ``condition`` holds are dropped with ``reason``."""
    hit = F.col("kept") & F.coalesce(condition, F.lit(False))
    return rows.withColumn("reason", F.when(hit, reason).otherwise(F.col("reason"))).withColumn(
        "kept", F.col("kept") & ~hit
    )


def _flag(rows: DataFrame, condition, flag) -> DataFrame:
    hit = F.coalesce(condition, F.lit(False))
    return rows.withColumn("flags", F.when(hit, F.array_append("flags", flag)).otherwise(F.col("flags")))


def _lookup(mapping: dict, key):
    """``mapping[key]`` as a Spark expression (null for keys it lacks)."""
    return F.create_map(*[F.lit(x) for item in mapping.items() for x in item])[key]


def select_across(rows: DataFrame, settings: FilterSettings) -> DataFrame:
    """The filters that compare one model's samples, in order: duplicates, video-disjoint
    sources, mixture. ``rows``: its ``token_lengths`` rows joined with ``sample_identity``."""
    duplicate = F.col("duplicate_of").isNotNull()
    duplicate_reason = F.concat(F.lit("exact duplicate of "), F.col("duplicate_of"))
    if settings.duplicates == "drop":
        rows = _drop(rows, duplicate, duplicate_reason)
    elif settings.duplicates == "flag":
        rows = _flag(rows, duplicate, duplicate_reason)
    if settings.video_disjoint:
        rows = _video_disjoint(rows, settings.video_disjoint)
    if settings.mixture:
        rows = _mixture(rows, settings.mixture)
    return rows


def _video_disjoint(rows: DataFrame, priority: tuple[str, ...]) -> DataFrame:
    """A video that kept samples of several listed sources use stays with the source listed
    first; the other sources' samples using it are dropped. One pass: a sample dropped here
    does not free its other videos (exact for one video per sample, safe for several)."""
    rank = _lookup({source: i for i, source in enumerate(priority)}, F.col("source"))
    uses = rows.where(F.col("kept") & F.col("source").isin(*priority)).select(
        "sample_id", "source", rank.alias("rank"), F.explode("videos").alias("video")
    )
    owners = uses.groupBy("video").agg(F.min_by("source", "rank").alias("owner"))
    conflicts = (
        uses.join(owners, "video")
        .where(F.col("source") != F.col("owner"))
        .groupBy("sample_id")
        .agg(F.min(F.struct("video", "owner")).alias("conflict"))
    )
    reason = F.concat(
        F.lit("video-disjoint: "), F.col("conflict.video"), F.lit(" stays with source "), F.col("conflict.owner")
    )
    return _drop(rows.join(conflicts, "sample_id", "left"), F.col("conflict").isNotNull(), reason).drop("conflict")


def _mixture(rows: DataFrame, mixture: Mixture) -> DataFrame:
    """Each source keeps the first ``quota`` of its kept samples in the seeded hash order."""
    quota = _lookup(mixture.quotas, F.col("source"))
    order = F.sha2(F.concat_ws(":", F.lit(str(mixture.seed)), F.col("sample_id")), 256)
    drawn = F.row_number().over(Window.partitionBy("kept", "source").orderBy(order))
    rows = _drop(rows, quota.isNull(), F.concat(F.lit("mixture: source "), F.col("source"), F.lit(" is not in the mix")))
    not_drawn = F.concat(
        F.lit("mixture: not drawn (source "), F.col("source"), F.lit(" keeps "), quota.cast("string"), F.lit(")")
    )
    return _drop(rows, drawn > quota, not_drawn)


def run(ctx: Context) -> StageResult:
    started = time.time()
    config = ctx.config
    inputs = samples_with_frames(ctx.lake).select(
        "sample_id", "media", "conversations", "in_context", "media_frames"
    ).persist()
    identity = sample_identity(ctx.lake.read("samples")).persist()
    ctx.progress.total(ctx.lake.info("samples").rows, "samples")
    assessed = []
    try:
        per_model = []
        for profile in config.models:
            settings = config.filters[profile["name"]]
            rows = inputs.mapInArrow(
                CountTokens(profile, settings, config.shards.formats), to_spark_schema(TOKEN_LENGTHS)
            ).persist()
            assessed.append(rows)
            chosen = select_across(rows.join(identity, "sample_id"), settings)
            per_model.append(chosen.withColumn("settings", F.lit(settings_fingerprint(config, profile))))
        ctx.lake.write("token_lengths", functools.reduce(DataFrame.unionByName, per_model))
    finally:
        for frame in (inputs, identity, *assessed):
            frame.unpersist()
    counts = {
        row["model"]: f"{row['kept']}/{row['samples']} kept"
        for row in ctx.lake.read("token_lengths").groupBy("model").agg(
            F.count(F.lit(1)).alias("samples"), F.count_if("kept").alias("kept")
        ).collect()
    }
    return StageResult("tokens", counts, time.time() - started)


if __name__ == "__main__":
    stage_main(run)
