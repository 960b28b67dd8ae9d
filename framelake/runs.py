"""Run records: one JSON file per pipeline run under ``<lake>/runs/<run_id>.json`` (stage counts,
times and items done), written by the pipeline and read by the report."""
from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from framelake.lake import Lake


def new_run_id() -> str:
    """Sortable by start time, unique across concurrent runs."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def save_run(lake: Lake, record: dict) -> str:
    uri = lake.uri("runs", f"{record['run_id']}.json")
    lake.storage.write_bytes(uri, json.dumps(record, indent=1, default=str).encode("utf-8"))
    return uri


def load_run(lake: Lake, run_id: str | None = None) -> dict | None:
    """The record of ``run_id``, or of the latest run; None if no run was recorded."""
    if run_id is None:
        records = [uri for uri in lake.storage.list(lake.uri("runs")) if uri.endswith(".json")]
        if not records:
            return None
        uri = max(records)
    else:
        uri = lake.uri("runs", f"{run_id}.json")
        if not lake.storage.exists(uri):  # the same error for a local lake and S3
            raise FileNotFoundError(uri)
    return json.loads(lake.storage.read_bytes(uri))
