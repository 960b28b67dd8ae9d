"""The ``manifest.json`` of one (model, format) output."""
from __future__ import annotations

import json
from typing import Sequence

MANIFEST_NAME = "manifest.json"


def manifest_json(rows: Sequence[dict], *, model: str, fmt: str, config_fingerprint: str) -> str:
    """The ``manifest.json`` text of one (model, format) output: totals plus one row per shard.

    Rows follow the SHARDS schema's field order and are sorted by ``shard_path``; no timestamps,
    so the same shards give the same text.
    """
    from udfs.schemas import SHARDS  # here, not at the top: it loads pyarrow (see mimicit.py)

    shard_rows = sorted(({name: row[name] for name in SHARDS.names} for row in rows), key=lambda r: r["shard_path"])
    for row in shard_rows:
        if (row["model"], row["format"]) != (model, fmt):
            raise ValueError(f"shard {row['shard_path']} belongs to {row['model']}/{row['format']}, not {model}/{fmt}")
    manifest = {
        "model": model,
        "format": fmt,
        "config_fingerprint": config_fingerprint,
        "shard_count": len(shard_rows),
        "samples": sum(r["samples"] for r in shard_rows),
        "bytes": sum(r["bytes"] for r in shard_rows),
        "token_sum": sum(r["token_sum"] for r in shard_rows),
        "shards": shard_rows,
    }
    return json.dumps(manifest, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
