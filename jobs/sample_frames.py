"""Each sample with its media's extraction status and frames, for the tokens and shards stages."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DataType, StructType

from framelake.lake import Lake
from jobs.sample_versions import rewritten

# The columns of ``samples_with_frames`` the tokens stage reads (``source`` for the filters
# that compare samples): ``tokens_inputs_digest`` is part of each model's ``token_lengths`` fingerprint.
TOKENS_INPUTS = ("sample_id", "source", "media", "conversations", "in_context", "media_frames", "in_context_frames")


def samples_with_frames(lake: Lake):
    """``samples`` plus ``media_frames``: per media item, in order, its kind, extraction status
    and frames (sorted by index, with their JPEG ``bytes``); and ``in_context_frames``: the same
    for each media item of each in-context example, numbered by ``example`` and ``position``.
    Samples without media (or examples) get an empty list."""
    samples = lake.read("samples")
    videos = lake.read("videos").select("video_id", "status")
    frames = lake.read("frames").groupBy("video_id").agg(
        F.sort_array(
            F.collect_list(F.struct("frame_index", "timestamp_s", "uri", "width", "height", "bytes"))
        ).alias("frames")
    )

    def extracted(media, key: list[str], name: str):
        """Per sample, its ``media`` rows (``sample_id``, ``key``, ``kind``, ``video_id``) with
        their status and frames, sorted by ``key``, as the list column ``name``."""
        return (
            media.join(videos, "video_id", "left")
            .join(frames, "video_id", "left")
            .groupBy("sample_id")
            .agg(F.sort_array(F.collect_list(F.struct(*key, "kind", "status", "frames"))).alias(name))
        )

    media = samples.select("sample_id", F.posexplode("media").alias("position", "m")).select(
        "sample_id", "position", F.col("m.kind").alias("kind"), F.col("m.media_id").alias("video_id")
    )
    example_media = (
        samples.select("sample_id", F.posexplode("in_context").alias("example", "e"))
        .select("sample_id", "example", F.posexplode("e.media").alias("position", "m"))
        .select("sample_id", "example", "position", F.col("m.kind").alias("kind"),
                F.col("m.media_id").alias("video_id"))
    )
    per_sample = extracted(media, ["position"], "media_frames")
    per_example = extracted(example_media, ["example", "position"], "in_context_frames")
    joined = samples.join(per_sample, "sample_id", "left").join(per_example, "sample_id", "left")
    for name, lists in (("media_frames", per_sample), ("in_context_frames", per_example)):
        joined = joined.withColumn(name, F.coalesce(F.col(name), F.array().cast(lists.schema[name].dataType)))
    return joined


def rows_digest(rows: DataFrame) -> list:
    """Row count and XOR of row hashes: any changed, added or removed row changes it."""
    digest = rows.agg(F.count(F.lit(1)), F.bit_xor(F.xxhash64(*rows.columns))).first()
    return [digest[0], digest[1]]


def tokens_inputs_digest(lake: Lake, inputs: DataFrame) -> list:
    """The digest of what the tokens stage reads: ``inputs`` (``samples_with_frames`` rows, of
    which ``TOKENS_INPUTS`` are read) and the rewrites that replace samples."""
    return [inputs_digest(inputs.select(*TOKENS_INPUTS)), rows_digest(rewritten(lake))]


def inputs_digest(rows: DataFrame) -> list:
    """``rows_digest`` of ``rows`` without the ``uri`` fields of their media and frames: a URI
    says where an object is, which its id and frame index already name, so two lakes of one
    corpus (or one moved to other mount points) digest alike."""
    return rows_digest(rows.select(*[_without_uris(F.col(f.name), f.dataType).alias(f.name)
                                     for f in rows.schema.fields]))


def _without_uris(column: Column, dtype: DataType) -> Column:
    if isinstance(dtype, StructType):
        return F.struct(*[_without_uris(column[f.name], f.dataType).alias(f.name)
                          for f in dtype.fields if f.name != "uri"])
    if isinstance(dtype, ArrayType):
        return F.transform(column, lambda element: _without_uris(element, dtype.elementType))
    return column
