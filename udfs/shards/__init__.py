"""Trainer-ready shards: one module per format, registered by name (``base``), plus shard
names (``naming``) and manifests (``manifest``).

Pure Python: callers pass canonical samples (``udfs.sample``), the frames chosen for each media
item, an ``open_writer`` for files, and (where pixels are embedded) a ``read_frame`` callable.
Nothing here touches Spark or object storage.

``frames`` is always aligned with ``sample["media"]``: one ordered list per media item of frame
dicts ``{frame_index, timestamp_s, path, width, height}``, ``path`` relative to the frames root.
A still image (kind ``image``) is one frame. A sample with in-context examples carries
``in_context_frames``: per media item of each example, its ``example`` and ``position`` numbers,
``kind``, ``status`` and ``frames`` (formats that write the examples as earlier turns show them).
Placeholders may stand in any user turn; every format puts its tags back where they stand.
Formatters raise ``ValueError`` with a reason when a sample cannot be expressed in the target
format; ``format_problem`` turns that into the reason the tokens stage drops the sample for.
"""
from udfs.shards.base import format_problem, get_format, known_formats
from udfs.shards.common import HashingWriter, write_json_shard
from udfs.shards.manifest import MANIFEST_NAME, manifest_json
from udfs.shards.naming import shard_dir, shard_name

# Importing a format's module registers it: this order is known_formats()'s (the order the
# config lists formats in and publish handles them).
# isort: off
from udfs.shards.minicpmv import MINICPMV_TAG, to_minicpmv
from udfs.shards.llava import to_llava
from udfs.shards.webdataset import WebDatasetShardWriter
from udfs.shards.mimicit import mimicit_files, to_mimicit
from udfs.shards.messages import to_messages
from udfs.shards.hf_parquet import messages_schema
# isort: on

__all__ = [
    "MANIFEST_NAME", "MINICPMV_TAG", "HashingWriter", "WebDatasetShardWriter", "format_problem", "get_format",
    "known_formats", "manifest_json", "messages_schema", "mimicit_files", "shard_dir", "shard_name", "to_llava",
    "to_messages", "to_mimicit", "to_minicpmv", "write_json_shard",
]
