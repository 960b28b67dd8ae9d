"""Stage 3: exact token lengths of every sample for every model, and which samples each keeps.

Per model, a ``mapInArrow`` does the per-sample work of ``udfs.filters.assess`` (the tokenizer
is loaded once per Python worker): the frames used, text and visual tokens, T2Vid's filters,
the quality checks and the shard formats. Spark then applies the filters that compare samples:
exact duplicates, video-disjoint sources and the mixture. Every (sample, model) gets a row;
a sample not kept carries its reason, so kept + dropped = samples, per model.
"""
from __future__ import annotations

import functools

import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from framelake.failpoints import failpoint
from framelake.runtime import Context
from jobs.cross_filters import select_across
from jobs.sample_frames import samples_with_frames
from jobs.stage import ArrowTask, Stage, stage_main
from udfs.filters import FilterSettings, assess
from udfs.schemas import TOKEN_LENGTHS, to_spark_schema
from udfs.token_lengths import ModelProfile
from udfs.tokenizers import load_counter


class CountTokens(ArrowTask):
    """Samples with frames in, one ``token_lengths`` row each out."""

    def __init__(self, profile: ModelProfile, filters: FilterSettings = FilterSettings(),
                 formats: tuple[str, ...] = ()):
        self.profile = profile
        self.filters = filters
        self.formats = formats

    def process(self, batches):
        counter = load_counter(self.profile.tokenizer)
        for batch in batches:
            failpoint("tokens.map")
            rows = assess(self.profile, counter, self.filters, batch.to_pylist(), self.formats)
            if rows:
                yield pa.RecordBatch.from_pylist(rows, schema=TOKEN_LENGTHS)


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


class TokensStage(Stage):
    name = "tokens"

    def execute(self, ctx: Context) -> tuple[dict, None]:
        return count_tokens(ctx), None


def count_tokens(ctx: Context) -> dict:
    """``token_lengths`` of every sample for every model; the samples kept per model."""
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
            settings = config.filters[profile.name]
            rows = inputs.mapInArrow(
                CountTokens(profile, settings, config.shards.formats), to_spark_schema(TOKEN_LENGTHS)
            ).persist()
            assessed.append(rows)
            chosen = select_across(rows.join(identity, "sample_id"), settings)
            per_model.append(chosen.withColumn("settings", F.lit(config.tokens_fingerprint(profile))))
        ctx.lake.write("token_lengths", functools.reduce(DataFrame.unionByName, per_model))
    finally:
        for frame in (inputs, identity, *assessed):
            frame.unpersist()
    return {
        row["model"]: f"{row['kept']}/{row['samples']} kept"
        for row in ctx.lake.read("token_lengths").groupBy("model").agg(
            F.count(F.lit(1)).alias("samples"), F.count_if("kept").alias("kept")
        ).collect()
    }


stage = TokensStage()

if __name__ == "__main__":
    stage_main(stage)
