"""Arrow schemas of every framelake table and of the rows udfs exchange.

These are the contracts between stages. Jobs turn them into Spark schemas with
``to_spark_schema``; udfs build plain dicts that match them.
"""
from __future__ import annotations

import pyarrow as pa

TURN = pa.struct([("role", pa.string()), ("content", pa.string())])

# A media reference of a sample. ``kind`` is "video" (a file ffmpeg decodes: mp4, gif, ...),
# "image" (one still), or "frames_dir" (a folder of ordered image files played as a video).
# ``start_s``/``end_s`` clip a video; both null means the whole file. ``media_id`` identifies
# (kind, the media's location-free name, clip; ``udfs.sample.make_media``): it is the
# ``video_id`` of the videos and frames tables.
MEDIA = pa.struct(
    [
        ("media_id", pa.string()),
        ("kind", pa.string()),
        ("uri", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
    ]
)

# An in-context example (MIMIC-IT): its own turns and media, kept apart from the query turns.
IN_CONTEXT = pa.struct(
    [
        ("example_id", pa.string()),
        ("conversations", pa.list_(TURN)),
        ("media", pa.list_(MEDIA)),
    ]
)

# What normalize accepted in a record with a change, per sample: ``kind`` names the change
# ("in_context_dropped": in-context example ids that name no instruction of the task, dropped),
# ``count`` how many, ``detail`` which (ids, truncated).
NOTE = pa.struct([("kind", pa.string()), ("count", pa.int64()), ("detail", pa.string())])

SAMPLES = pa.schema(
    [
        ("sample_id", pa.string()),
        ("source", pa.string()),
        ("format", pa.string()),
        ("media_type", pa.string()),
        ("media", pa.list_(MEDIA)),
        ("conversations", pa.list_(TURN)),
        ("in_context", pa.list_(IN_CONTEXT)),
        ("language", pa.string()),
        ("notes", pa.list_(NOTE)),
        ("source_file", pa.string()),
        ("record_index", pa.int64()),
        ("raw", pa.string()),
    ]
)

REJECTS = pa.schema(
    [
        ("stage", pa.string()),
        ("source", pa.string()),
        ("format", pa.string()),
        ("source_file", pa.string()),
        ("record_index", pa.int64()),
        ("reason", pa.string()),
        ("raw", pa.string()),
    ]
)

VIDEOS = pa.schema(
    [
        ("video_id", pa.string()),
        ("uri", pa.string()),
        ("kind", pa.string()),
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("duration_s", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("codec", pa.string()),
        ("fps_native", pa.float64()),
        ("n_frames", pa.int32()),
        ("params", pa.string()),
        ("strategy", pa.string()),
        ("elapsed_s", pa.float64()),
    ]
)

FRAMES = pa.schema(
    [
        ("video_id", pa.string()),
        ("frame_index", pa.int32()),
        ("timestamp_s", pa.float64()),
        ("uri", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
    ]
)

# One row per (sample, model). ``n_frames`` frames are used: ``select_frames(media, frame_budget)``
# gives them (``trimmed``: the budget was lowered below max_frames to fit max_tokens). ``fits``:
# within the token budget; ``kept``: goes into the model's shards, else ``reason`` says why.
# ``flags``: quality findings of filters set to "flag". ``payload_bytes``: the frame JPEGs and
# text the sample puts in a shard. ``settings``: fingerprint of the settings that made the row.
TOKEN_LENGTHS = pa.schema(
    [
        ("sample_id", pa.string()),
        ("model", pa.string()),
        ("n_frames", pa.int32()),
        ("text_tokens", pa.int32()),
        ("visual_tokens", pa.int32()),
        ("total_tokens", pa.int32()),
        ("t2vid_estimate", pa.int32()),
        ("fits", pa.bool_()),
        ("reason", pa.string()),
        ("frame_budget", pa.int32()),
        ("trimmed", pa.bool_()),
        ("kept", pa.bool_()),
        ("flags", pa.list_(pa.string())),
        ("payload_bytes", pa.int64()),
        ("settings", pa.string()),
    ]
)

SHARDS = pa.schema(
    [
        ("model", pa.string()),
        ("format", pa.string()),
        ("shard_path", pa.string()),
        ("samples", pa.int64()),
        ("bytes", pa.int64()),
        ("token_sum", pa.int64()),
        ("sha256", pa.string()),
    ]
)

# The annotation files a normalize run read, one row per file: ``source_file`` is the file its
# unit's rows are attributed to, ``version`` the ETag or modification time, ``settings`` a
# fingerprint of the source's config. A rerun normalizes only units whose files changed.
SOURCE_FILES = pa.schema(
    [
        ("source", pa.string()),
        ("source_file", pa.string()),
        ("uri", pa.string()),
        ("size", pa.int64()),
        ("version", pa.string()),
        ("settings", pa.string()),
    ]
)

# One row per request the generate stage sent and got a reply to, stored as it arrives:
# ``request_key`` (``udfs.generate.keys``) is never sent again. ``sampling``: JSON of the
# sampling parameters; ``endpoint_host``: host and port only, never credentials.
GENERATIONS = pa.schema(
    [
        ("request_key", pa.string()),
        ("recipe", pa.string()),
        ("recipe_version", pa.int64()),
        ("query_id", pa.string()),
        ("prompt_hash", pa.string()),
        ("model", pa.string()),
        ("endpoint_host", pa.string()),
        ("sampling", pa.string()),
        ("reply", pa.string()),
        ("finish_reason", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("attempts", pa.int32()),
        ("elapsed_s", pa.float64()),
    ]
)

# Where each sample the generate stage wrote comes from: its recipe, ``kind`` (generate,
# rewrite, translate), the query, the sample it rewrites or translates, the request and its usage.
# A rewrite's original stays in ``samples``; the tokens stage drops it for the rewrite.
LINEAGE = pa.schema(
    [
        ("sample_id", pa.string()),
        ("recipe", pa.string()),
        ("kind", pa.string()),
        ("query_id", pa.string()),
        ("original_sample_id", pa.string()),
        ("lang", pa.string()),
        ("request_key", pa.string()),
        ("prompt_hash", pa.string()),
        ("model", pa.string()),
        ("endpoint_host", pa.string()),
        ("sampling", pa.string()),
        ("recipe_version", pa.int64()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "samples": SAMPLES,
    "rejects": REJECTS,
    "source_files": SOURCE_FILES,
    "videos": VIDEOS,
    "frames": FRAMES,
    "token_lengths": TOKEN_LENGTHS,
    "shards": SHARDS,
    "generations": GENERATIONS,
    "lineage": LINEAGE,
}


def to_spark_schema(schema: pa.Schema):
    """The Spark StructType of an Arrow schema (imported lazily: udfs stay Spark-free)."""
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)
