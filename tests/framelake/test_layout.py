"""The lake's layout version (``framelake.layout``): recorded on a new lake, checked on a lake
with tables."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest
from deltalake import write_deltalake

from framelake.lake import Lake
from framelake.layout import LAYOUT_FILE, LAYOUT_VERSION, LakeLayoutError, check_layout, recorded_layout
from framelake.storage import Storage, StorageOptions
from udfs.schemas import SAMPLES


def local_lake(tmp_path) -> Lake:
    return Lake(str(tmp_path / "lake"), Storage(StorageOptions.from_config(None)))


def with_samples_table(lake: Lake) -> Lake:
    write_deltalake(lake.table_uri("samples"), pa.Table.from_pylist([], schema=SAMPLES))
    return lake


def test_a_new_lake_records_its_layout_then_passes(tmp_path):
    lake = local_lake(tmp_path)
    assert recorded_layout(lake) is None
    check_layout(lake)
    assert json.loads((tmp_path / "lake" / LAYOUT_FILE).read_text())["layout"] == LAYOUT_VERSION
    with_samples_table(lake)
    check_layout(lake)
    assert recorded_layout(lake) == LAYOUT_VERSION


def test_a_lake_with_tables_and_no_layout_is_layout_1_and_must_be_rebuilt(tmp_path):
    lake = with_samples_table(local_lake(tmp_path))
    assert recorded_layout(lake) == 1
    with pytest.raises(LakeLayoutError) as raised:
        check_layout(lake)
    message = str(raised.value)
    assert f"made under layout 1, this framelake writes layout {LAYOUT_VERSION}" in message
    assert "media ids" in message and f"delete {lake.uri('tables')} and {lake.uri('frames')}" in message
    assert not (tmp_path / "lake" / LAYOUT_FILE).exists()


def test_a_lake_whose_tables_were_deleted_is_rebuilt_under_this_layout(tmp_path):
    lake = local_lake(tmp_path)
    lake.storage.write_bytes(lake.uri(LAYOUT_FILE), json.dumps({"layout": 1}).encode())
    check_layout(lake)
    assert recorded_layout(lake) == LAYOUT_VERSION


def test_a_lake_of_a_newer_framelake_is_refused(tmp_path):
    lake = with_samples_table(local_lake(tmp_path))
    lake.storage.write_bytes(lake.uri(LAYOUT_FILE), json.dumps({"layout": LAYOUT_VERSION + 1}).encode())
    with pytest.raises(LakeLayoutError, match="by a newer framelake"):
        check_layout(lake)
