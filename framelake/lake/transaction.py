"""Committing Parquet files executors wrote as one Delta transaction (delta-rs), and settling a
commit whose response the store lost."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from deltalake import Schema
from deltalake.exceptions import DeltaError
from deltalake.transaction import AddAction, create_table_with_add_actions

from udfs.schemas import TABLES

if TYPE_CHECKING:
    from framelake.lake.tables import Lake


def commit(lake: Lake, name: str, added_files: list[dict], mode: str) -> int:
    """Commit Parquet files already under the table root as one Delta transaction."""
    actions = [
        AddAction(
            f["path"], f["size"], {}, f["modification_time"], True,
            json.dumps({"numRecords": f["num_records"]}),
        )
        for f in added_files
    ]
    schema = TABLES[name]
    table = lake.delta_table(name)
    try:
        if table is None:
            create_table_with_add_actions(
                lake.table_uri(name), Schema.from_arrow(schema), actions, mode="append",
                name=name, storage_options=lake.delta_options,
            )
        else:
            table.create_write_transaction(actions, mode=mode, schema=schema)
    except (DeltaError, OSError):  # delta-rs raises a store's errors as OSError
        # A store can apply a commit and lose the response (S3: a 500 after the write); the
        # retried conditional PUT then finds the version taken and delta-rs reports a conflict
        # with what is in fact this very commit. Its files, uuid-named, tell it apart.
        landed = _version_adding(lake, name, {f["path"] for f in added_files},
                                 after=-1 if table is None else table.version())
        if landed is None:
            raise
        return landed
    return lake.delta_table(name).version()


def _version_adding(lake: Lake, name: str, paths: set[str], after: int) -> int | None:
    """The version after ``after`` whose commit adds exactly the files ``paths``, if any."""
    table = lake.delta_table(name)
    if not paths or table is None:
        return None
    for version in range(after + 1, table.version() + 1):
        actions = commit_actions(lake, name, version) or []
        if {a["add"]["path"] for a in actions if "add" in a} == paths:
            return version
    return None


def commit_actions(lake: Lake, name: str, version: int) -> list[dict] | None:
    """The actions of one commit as its log entry lists them; None once the entry is gone."""
    entry = lake.uri("tables", name, "_delta_log", f"{version:020d}.json")
    if not lake.storage.exists(entry):
        return None
    return [json.loads(line) for line in lake.storage.read_bytes(entry).splitlines() if line.strip()]
