"""The lake layer: engine choice, atomic commits, uncommitted files never read, S3."""
from __future__ import annotations

import os

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from framelake.lake import Lake, ParquetPartWriter, delta_spark_available
from framelake.storage import Storage, StorageOptions
from tests.support.tables import shard_rows
from udfs.schemas import SHARDS, to_spark_schema


def test_plain_session_uses_delta_rs(spark):
    assert not delta_spark_available(spark)
    assert Lake("/tmp/x", Storage(), spark).engine == "delta-rs"


def test_databricks_runtime_selects_delta_spark(spark, monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert Lake("/tmp/x", Storage(), spark).engine == "delta-spark"


def test_delta_spark_engine_writes_a_delta_table(spark, tmp_path):
    if not delta_spark_available(spark):
        pytest.skip("delta-spark jars are not on the classpath (no Maven repository reachable here)")
    lake = Lake(str(tmp_path), Storage(), spark)
    lake.write("shards", spark.createDataFrame(shard_rows(3), to_spark_schema(SHARDS)))
    assert DeltaTable(lake.table_uri("shards")).to_pyarrow_table().num_rows == 3


def test_overwrite_and_append_commit_one_version_each(spark, tmp_path):
    lake = Lake(str(tmp_path), Storage(), spark)
    schema = to_spark_schema(SHARDS)
    assert lake.write("shards", spark.createDataFrame(shard_rows(5), schema)) == 0
    assert lake.write("shards", spark.createDataFrame(shard_rows(2, "n"), schema), mode="append") == 1
    assert lake.read("shards").count() == 7
    assert lake.write("shards", spark.createDataFrame(shard_rows(1), schema)) == 2
    assert DeltaTable(lake.table_uri("shards")).to_pyarrow_table().num_rows == 1
    info = lake.info("shards")
    assert (info.version, info.rows) == (2, 1) and info.bytes > 0


def test_files_written_without_a_commit_are_never_read(spark, tmp_path):
    lake = Lake(str(tmp_path), Storage(), spark)
    schema = to_spark_schema(SHARDS)
    lake.write("shards", spark.createDataFrame(shard_rows(3), schema))
    # An executor wrote Parquet, then the driver died before committing.
    writer = ParquetPartWriter(lake.storage, lake.table_uri("shards"), SHARDS)
    orphans = spark.createDataFrame(shard_rows(4, "orphan"), schema).mapInArrow(
        writer, "path string, size long, num_records long, modification_time long"
    ).collect()
    assert all(os.path.isfile(os.path.join(lake.table_uri("shards"), o.path)) for o in orphans)
    assert lake.read("shards").count() == 3
    assert lake.read_arrow("shards").num_rows == 3


def test_empty_write_creates_an_empty_table(spark, tmp_path):
    lake = Lake(str(tmp_path), Storage(), spark)
    lake.write("shards", spark.createDataFrame([], to_spark_schema(SHARDS)))
    assert lake.exists("shards") and lake.read("shards").count() == 0


def test_lake_on_s3_round_trips_through_delta_rs_and_spark(spark, s3_storage_section):
    storage = Storage(StorageOptions.from_config(s3_storage_section))
    lake = Lake("s3://framelake-test/lake-unit", storage, spark)
    lake.write("shards", spark.createDataFrame(shard_rows(6), to_spark_schema(SHARDS)))
    dt = DeltaTable(lake.table_uri("shards"), storage_options=storage.options.delta_rs_options())
    assert dt.to_pyarrow_table().num_rows == 6
    assert sorted(r["samples"] for r in lake.read("shards").collect()) == list(range(6))
    assert lake.read_arrow("shards").equals(pa.table(dt.to_pyarrow_table()))


def test_table_with_reader_features_is_read_through_delta_rs(tmp_path):
    """A table whose protocol has reader features (Databricks turns on deletion vectors) is
    not read file by file: delta-rs reads it, or says it cannot."""
    from deltalake import write_deltalake
    from deltalake.table import TableFeatures

    lake = Lake(str(tmp_path / "lake"), Storage(StorageOptions.from_config(None)))
    rows = shard_rows(3)
    write_deltalake(lake.table_uri("shards"), pa.Table.from_pylist(rows, schema=SHARDS))
    lake.delta_table("shards").alter.add_feature(TableFeatures.TimestampWithoutTimezone,
                                                 allow_protocol_versions_increase=True)
    assert lake.delta_table("shards").protocol().reader_features == ["timestampNtz"]
    assert sorted(lake.read_arrow("shards").to_pylist(), key=str) == sorted(rows, key=str)
