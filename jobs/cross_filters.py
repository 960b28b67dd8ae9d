"""The filters that compare one model's samples, in Spark: exact duplicates, video-disjoint
sources, the mixture. They run on the ``token_lengths`` rows of ``udfs.filters.assess`` and
drop a sample as it does, with a reason in its row.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from udfs.filters import FilterSettings, Mixture


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


def drop_rewritten(rows: DataFrame) -> DataFrame:
    """Originals that a rewrite recipe made a new version of (``jobs.sample_versions``: the
    ``rewritten_as`` and ``rewritten_by`` columns) give way to it, whatever the settings; this
    reason replaces the one a check gave (the refusal a rewrite fixed, say)."""
    hit = F.col("rewritten_as").isNotNull()
    reason = F.concat(F.lit("rewritten by recipe "), F.col("rewritten_by"), F.lit(" as "), F.col("rewritten_as"))
    return rows.withColumn("reason", F.when(hit, reason).otherwise(F.col("reason"))).withColumn(
        "kept", F.col("kept") & ~hit)


def select_across(rows: DataFrame, settings: FilterSettings) -> DataFrame:
    """The filters that compare one model's samples, in order: duplicates, video-disjoint
    sources, mixture. ``rows``: its ``token_lengths`` rows joined with ``jobs.tokens.sample_identity``."""
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
    not_in_mix = F.concat(F.lit("mixture: source "), F.col("source"), F.lit(" is not in the mix"))
    rows = _drop(rows, quota.isNull(), not_in_mix)
    not_drawn = F.concat(
        F.lit("mixture: not drawn (source "), F.col("source"), F.lit(" keeps "), quota.cast("string"), F.lit(")")
    )
    return _drop(rows, drawn > quota, not_drawn)
