"""Each sample with its media's extraction status and frames, for the tokens and shards stages."""
from __future__ import annotations

from pyspark.sql import functions as F

from framelake.lake import Lake


def samples_with_frames(lake: Lake):
    """``samples`` plus ``media_frames``: per media item, in order, its kind, extraction status
    and frames (sorted by index, with their JPEG ``bytes``). Text-only samples get an empty list."""
    samples = lake.read("samples")
    media = samples.select("sample_id", F.posexplode("media").alias("position", "m")).select(
        "sample_id", "position", F.col("m.kind").alias("kind"), F.col("m.media_id").alias("video_id")
    )
    videos = lake.read("videos").select("video_id", "status")
    frames = lake.read("frames").groupBy("video_id").agg(
        F.sort_array(
            F.collect_list(F.struct("frame_index", "timestamp_s", "uri", "width", "height", "bytes"))
        ).alias("frames")
    )
    per_sample = (
        media.join(videos, "video_id", "left")
        .join(frames, "video_id", "left")
        .groupBy("sample_id")
        .agg(F.sort_array(F.collect_list(F.struct("position", "kind", "status", "frames"))).alias("media_frames"))
    )
    return samples.join(per_sample, "sample_id", "left").withColumn(
        "media_frames", F.coalesce(F.col("media_frames"), F.array().cast(per_sample.schema["media_frames"].dataType))
    )
