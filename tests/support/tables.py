"""Lake tables in the tests: rows to write, each table's key, and comparisons of two lakes."""
from __future__ import annotations

import re

from framelake.lake import Lake
from udfs.schemas import TABLES

# The key of each table (docs/architecture.md): no run, however it ends, may leave two rows with one key.
TABLE_KEYS = {
    "samples": ["sample_id"],
    "rejects": ["source_file", "record_index"],
    "source_files": ["source", "uri"],
    "videos": ["video_id"],
    "frames": ["video_id", "frame_index"],
    "token_lengths": ["sample_id", "model"],
    "shards": ["shard_path"],
}

# Columns that differ between two correct runs: timings, the local file version (mtime) against
# the S3 one (ETag), the hash of a source's settings (they name its location), and the shards'
# bytes and hashes (shards carry media URIs).
VARYING = {"videos": {"elapsed_s"}, "source_files": {"version", "settings"}, "shards": {"bytes", "sha256"}}


def shard_rows(n: int, model: str = "m") -> list[dict]:
    """``n`` rows of the ``shards`` table."""
    return [
        {"model": model, "format": "llava", "shard_path": f"s{i}", "samples": i, "bytes": 10 * i,
         "token_sum": 100 * i, "sha256": "0" * 64}
        for i in range(n)
    ]


def comparable_rows(lake: Lake, name: str, renames: dict[str, str]) -> list[str]:
    """The table's rows as sorted strings, without varying columns, with ``renames`` applied
    (lake and corpus locations to placeholders). Ids name no location: two lakes of one corpus
    compare as they are."""
    table = lake.read_arrow(name)
    table = table.drop_columns(sorted(VARYING.get(name, set()) & set(table.column_names)))
    pattern = re.compile("|".join(re.escape(old) for old in sorted(renames, key=len, reverse=True)))
    return sorted(pattern.sub(lambda m: renames[m.group(0)], repr(sorted(row.items()))) for row in table.to_pylist())


GENERATE_TABLES = ("generations", "lineage")  # written only when the generate stage runs


def written_tables(lake: Lake) -> list[str]:
    """The tables of ``lake`` that a run has written, in ``TABLES`` order."""
    return [name for name in TABLES if lake.exists(name)]


def assert_same_tables(lake: Lake, demo_ctx) -> None:
    """Every table, read back with delta-rs, has the demo run's row count, and ``samples`` its
    sample ids."""
    def sample_ids(of: Lake) -> list[str]:
        return sorted(of.read_arrow("samples", ["sample_id"]).column("sample_id").to_pylist())

    assert written_tables(lake) == written_tables(demo_ctx.lake)
    for name in written_tables(lake):
        assert lake.read_arrow(name).num_rows == demo_ctx.lake.info(name).rows, name
    assert sample_ids(lake) == sample_ids(demo_ctx.lake)
