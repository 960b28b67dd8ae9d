"""Stage 3: exact token lengths of every sample for every model, and which samples each keeps.

Per model, a ``mapInArrow`` does the per-sample work of ``udfs.filters.assess`` (the tokenizer
is loaded once per Python worker): the frames used, text and visual tokens, T2Vid's filters,
the quality checks and the shard formats. Spark then applies the filters that compare samples:
exact duplicates, video-disjoint sources and the mixture. Every (sample, model) gets a row;
a sample not kept carries its reason, so kept + dropped = samples, per model.

A model's rows carry its fingerprint (``settings``): its settings and a digest of the rows
read. A model whose fingerprint is unchanged keeps its rows; when none changed, nothing is
written.
"""
from __future__ import annotations

import functools

import pyarrow as pa
from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from framelake.failpoints import failpoint
from framelake.runtime import Context
from jobs.cross_filters import drop_rewritten, select_across
from jobs.sample_frames import TOKENS_INPUTS, samples_with_frames, tokens_inputs_digest
from jobs.sample_versions import rewritten
from jobs.stage import ArrowTask, Stage, stage_main
from udfs.filters import FilterSettings, assess
from udfs.schemas import TOKEN_LENGTHS, to_spark_schema
from udfs.shards import get_format
from udfs.token_lengths import ModelProfile
from udfs.tokenizers import load_counter


class CountTokens(ArrowTask):
    """Samples with frames in, one ``token_lengths`` row each out."""

    def __init__(self, profile: ModelProfile, filters: FilterSettings = FilterSettings(),
                 formats: tuple = ()):  # the model's shard formats, set up from the config
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

    def execute(self, ctx: Context) -> tuple[dict, dict]:
        return count_tokens(ctx)


def count_tokens(ctx: Context) -> tuple[dict, dict]:
    """``token_lengths`` of every sample for each model whose fingerprint (its settings and a
    digest of the input rows) is not the one its rows carry; the samples kept per model, and
    the models rewritten. When every model's rows are current, nothing is written."""
    config = ctx.config
    inputs = samples_with_frames(ctx.lake).select(*TOKENS_INPUTS).persist()
    shard_formats = tuple(get_format(fmt, config.shards) for fmt in config.shards.formats)
    identity = sample_identity(ctx.lake.read("samples")).join(rewritten(ctx.lake), "sample_id", "left").persist()
    assessed = []
    try:
        digest = tokens_inputs_digest(ctx.lake, inputs)
        fingerprints = {profile.name: config.tokens_fingerprint(profile, digest) for profile in config.models}
        made = made_fingerprints(ctx)
        samples = ctx.lake.info("samples").rows
        current = {name: {fingerprint: samples} if samples else {} for name, fingerprint in fingerprints.items()}
        todo = [profile for profile in config.models
                if made is None or made.get(profile.name, {}) != current[profile.name]]
        gone = sorted(set(made or {}) - set(fingerprints))  # models no longer configured
        ctx.progress.total(samples if todo else 0, "samples")
        per_model = [ctx.spark.createDataFrame([], to_spark_schema(TOKEN_LENGTHS))]
        for profile in todo:
            settings = config.filters[profile.name]
            rows = inputs.mapInArrow(
                CountTokens(profile, settings, shard_formats), to_spark_schema(TOKEN_LENGTHS)
            ).persist()
            assessed.append(rows)
            chosen = select_across(drop_rewritten(rows.join(identity, "sample_id")), settings)
            made_now = chosen.withColumn("settings", F.lit(fingerprints[profile.name]))
            per_model.append(made_now.select(*TOKEN_LENGTHS.names))
        if todo or gone:
            replaced = [profile.name for profile in todo] + gone
            ctx.lake.replace("token_lengths", functools.reduce(DataFrame.unionByName, per_model), "model", replaced,
                             [model for model in replaced if model in (made or {})])
    finally:
        for frame in (inputs, identity, *assessed):
            frame.unpersist()
    counts = {
        row["model"]: f"{row['kept']}/{row['samples']} kept"
        for row in ctx.lake.read("token_lengths").groupBy("model").agg(
            F.count(F.lit(1)).alias("samples"), F.count_if("kept").alias("kept")
        ).collect()
    }
    return counts, {"rewritten": [profile.name for profile in todo]}


def made_fingerprints(ctx: Context) -> dict[str, dict[str, int]] | None:
    """Per model in ``token_lengths``, its rows per fingerprint (``settings``); None before the table exists."""
    if not ctx.lake.exists("token_lengths"):
        return None
    made: dict[str, dict[str, int]] = {}
    for row in ctx.lake.read("token_lengths").groupBy("model", "settings").count().collect():
        made.setdefault(row["model"], {})[row["settings"]] = row["count"]
    return made


stage = TokensStage()

if __name__ == "__main__":
    stage_main(stage)
