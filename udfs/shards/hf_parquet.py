"""The ``messages`` records as one Parquet file per shard, for
``datasets.load_dataset("parquet", data_files=...)``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from udfs.shards.base import OpenWriter, ReadFrame, SampleWithFrames, ShardFile, register_format
from udfs.shards.common import HashingWriter
from udfs.shards.messages import MessagesFormat


def messages_schema():
    """The Arrow schema of a shard (pyarrow is imported where used: see mimicit.py)."""
    import pyarrow as pa

    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    return pa.schema([
        ("id", pa.string()),
        ("messages", pa.list_(message)),
        ("images", pa.list_(pa.string())),
        ("videos", pa.list_(pa.list_(pa.string()))),
    ])


@register_format("hf_parquet")
@dataclass(frozen=True)
class HfParquetFormat(MessagesFormat):
    """The ``messages`` format's records and checks, stored as a Parquet table."""

    extension = ".parquet"

    def write(
        self, uri: str, samples: Sequence[SampleWithFrames], open_writer: OpenWriter, read_frame: ReadFrame
    ) -> list[ShardFile]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([self.record(sample, frames) for sample, frames in samples], messages_schema())
        buffer = pa.BufferOutputStream()
        pq.write_table(table, buffer, compression="zstd")
        with open_writer(uri) as raw:
            out = HashingWriter(raw)
            out.write(buffer.getvalue().to_pybytes())
        return [ShardFile(uri, table.num_rows, out.bytes, out.sha256)]
