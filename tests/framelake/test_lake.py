"""The lake layer on both engines: engine choice, atomic commits, uncommitted files never read,
S3, and what delta-spark adds (idempotent appends, replaceWhere, Spark's VACUUM, the catalog)."""
from __future__ import annotations

import os

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from framelake import failpoints
from framelake.lake import EngineError, Lake, ParquetPartWriter, delta_spark_available
from framelake.storage import Storage, StorageOptions
from tests.support.tables import shard_rows
from udfs.schemas import SHARDS, to_spark_schema

ENGINES = ("delta-rs", "delta-spark")


def test_auto_picks_delta_spark_where_the_session_has_delta(spark):
    assert delta_spark_available(spark)  # the test session carries Delta's jars and extensions
    assert Lake("/tmp/x", Storage(), spark).engine == "delta-spark"
    assert Lake("/tmp/x", Storage(), spark, engine="delta-rs").engine == "delta-rs"
    assert Lake("/tmp/x", Storage()).engine == "delta-rs"  # driver-only: reads through delta-rs


def test_databricks_runtime_selects_delta_spark(spark, monkeypatch):
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    assert Lake("/tmp/x", Storage(), spark).engine == "delta-spark"


def test_delta_spark_without_a_session_says_what_is_missing(tmp_path):
    lake = Lake(str(tmp_path), Storage(), engine="delta-spark")
    with pytest.raises(EngineError, match="without a Spark session"):
        lake.read("shards")


def test_delta_spark_engine_writes_a_delta_table_delta_rs_reads(spark, tmp_path):
    lake = Lake(str(tmp_path), Storage(), spark, engine="delta-spark")
    lake.write("shards", spark.createDataFrame(shard_rows(3), to_spark_schema(SHARDS)))
    table = DeltaTable(lake.table_uri("shards"))
    assert table.to_pyarrow_table().num_rows == 3
    # Kept within what delta-rs reads and writes: no deletion vectors, no reader features.
    assert table.protocol().min_reader_version == 1 and not table.protocol().reader_features


@pytest.mark.parametrize("engine", ENGINES)
def test_overwrite_and_append_commit_one_version_each(spark, tmp_path, engine):
    lake = Lake(str(tmp_path), Storage(), spark, engine=engine)
    schema = to_spark_schema(SHARDS)
    assert lake.write("shards", spark.createDataFrame(shard_rows(5), schema)) == 0
    assert lake.write("shards", spark.createDataFrame(shard_rows(2, "n"), schema), mode="append") == 1
    assert lake.read("shards").count() == 7
    assert lake.write("shards", spark.createDataFrame(shard_rows(1), schema)) == 2
    assert DeltaTable(lake.table_uri("shards")).to_pyarrow_table().num_rows == 1
    info = lake.info("shards")
    assert (info.version, info.rows) == (2, 1) and info.bytes > 0


@pytest.mark.parametrize("engine", ENGINES)
def test_files_written_without_a_commit_are_never_read(spark, tmp_path, engine):
    lake = Lake(str(tmp_path), Storage(), spark, engine=engine)
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


@pytest.mark.parametrize("engine", ENGINES)
def test_empty_write_creates_an_empty_table(spark, tmp_path, engine):
    lake = Lake(str(tmp_path), Storage(), spark, engine=engine)
    lake.write("shards", spark.createDataFrame([], to_spark_schema(SHARDS)))
    assert lake.exists("shards") and lake.read("shards").count() == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_lake_on_s3_round_trips_through_delta_rs_and_spark(spark, s3_storage_section, engine):
    storage = Storage(StorageOptions.from_config(s3_storage_section))
    lake = Lake(f"s3://framelake-test/lake-unit-{engine}", storage, spark, engine=engine)
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


def test_a_delta_spark_commit_whose_response_was_lost_is_not_written_twice(spark, tmp_path, monkeypatch):
    lake = Lake(str(tmp_path), Storage(), spark, engine="delta-spark")
    schema = to_spark_schema(SHARDS)
    lake.write("shards", spark.createDataFrame(shard_rows(2), schema))
    monkeypatch.setitem(failpoints._ARMED, "lake.after_spark_commit", ("raise", 1))
    monkeypatch.setattr(failpoints, "_hits", {})
    # The commit lands, then the write fails as if its response were lost: it is recognised by
    # its transaction version, not repeated.
    assert lake.write("shards", spark.createDataFrame(shard_rows(3, "n"), schema), mode="append") == 1
    monkeypatch.delitem(failpoints._ARMED, "lake.after_spark_commit")
    table = lake.delta_table("shards")
    assert table.version() == 1 and table.to_pyarrow_table().num_rows == 5
    assert table.transaction_version("framelake:shards") == 2
    lake.write("shards", spark.createDataFrame(shard_rows(1, "m"), schema), mode="append")
    assert lake.read("shards").count() == 6 and lake.delta_table("shards").transaction_version("framelake:shards") == 3


@pytest.mark.parametrize("engine", ENGINES)
def test_replace_makes_the_rows_of_some_keys_exactly_the_new_ones(spark, tmp_path, engine):
    lake = Lake(str(tmp_path), Storage(), spark, engine=engine)
    schema = to_spark_schema(SHARDS)
    lake.write("shards", spark.createDataFrame(shard_rows(4), schema))
    before = {r["shard_path"]: r for r in lake.read_arrow("shards").to_pylist()}
    kept, replaced = sorted(before)[:2], sorted(before)[2:]
    new = [{**before[path], "samples": 100 + i} for i, path in enumerate(replaced)]
    version = lake.delta_table("shards").version()
    lake.replace("shards", spark.createDataFrame(new, schema), "shard_path", replaced, replaced)
    after = {r["shard_path"]: r for r in lake.read_arrow("shards").to_pylist()}
    assert sorted(after) == sorted(before)
    assert [after[p]["samples"] for p in kept] == [before[p]["samples"] for p in kept]
    assert [after[p]["samples"] for p in replaced] == [100, 101]
    # delta-spark replaces in one commit (replaceWhere); delta-rs deletes, then appends.
    assert lake.delta_table("shards").version() == version + (1 if engine == "delta-spark" else 2)


@pytest.mark.parametrize("writer, reader", [("delta-rs", "delta-spark"), ("delta-spark", "delta-rs")])
def test_each_engine_continues_what_the_other_wrote(spark, tmp_path, writer, reader):
    schema = to_spark_schema(SHARDS)
    first = Lake(str(tmp_path), Storage(), spark, engine=writer)
    first.write("shards", spark.createDataFrame(shard_rows(3), schema))
    second = Lake(str(tmp_path), Storage(), spark, engine=reader)
    second.write("shards", spark.createDataFrame(shard_rows(2, "n"), schema), mode="append")
    second.delete("shards", "samples = 0")
    assert sorted(r["samples"] for r in first.read("shards").collect()) == [1, 1, 2]
    assert first.checksum("shards") == second.checksum("shards")


@pytest.mark.parametrize("engine", ENGINES)
def test_vacuum_removes_files_no_version_needs(spark, tmp_path, engine):
    lake = Lake(str(tmp_path), Storage(), spark, engine=engine)
    schema = to_spark_schema(SHARDS)
    lake.write("shards", spark.createDataFrame(shard_rows(3), schema))
    lake.write("shards", spark.createDataFrame(shard_rows(2, "n"), schema))  # the first files: removed
    orphans = spark.createDataFrame(shard_rows(4, "orphan"), schema).mapInArrow(
        ParquetPartWriter(lake.storage, lake.table_uri("shards"), SHARDS),
        "path string, size long, num_records long, modification_time long").collect()
    listed = lake.vacuum(retention_hours=0, dry_run=True).table_files["shards"]
    assert {os.path.basename(uri) for uri in listed} >= {o.path for o in orphans}
    assert all(os.path.exists(uri) for uri in listed)
    removed = lake.vacuum(retention_hours=0).table_files["shards"]
    assert sorted(removed) == sorted(listed) and not any(os.path.exists(uri) for uri in removed)
    assert sorted(r["shard_path"] for r in lake.read_arrow("shards").to_pylist()) == sorted(
        r["shard_path"] for r in shard_rows(2, "n"))
