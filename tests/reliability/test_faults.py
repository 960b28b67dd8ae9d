"""The whole pipeline on S3 through a proxy failing about 10% of requests (tests/support/faultproxy.py),
on both engines: boto3, delta-rs, hadoop-aws (delta-spark's s3a) and ffmpeg retry, and the tables
come out as a fault-free run's."""
from __future__ import annotations

import pytest

from framelake.lake import Lake
from framelake.runtime import Context
from framelake.storage import Storage, StorageOptions
from jobs.pipeline import run_stages
from tests.support.config import demo_config
from tests.support.faultproxy import FAULTS, FaultProxy
from tests.support.paths import REPO
from tests.support.s3 import BUCKET, s3_sources, upload_demo
from tests.support.tables import comparable_rows, shard_rows
from udfs.schemas import TABLES


@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_pipeline_survives_a_faulty_store_with_identical_tables(s3_client, spark, s3_endpoint, s3_storage_section,
                                                                demo_run, engine):
    local_ctx, _ = demo_run
    client = s3_client
    upload_demo(client)  # straight to the server: the faults are for the pipeline's requests
    with FaultProxy(s3_endpoint, rate=0.1, seed=8, slow_s=(1.0, 3.0), truncate_except=("/tables/",),
                    lost_create_every=3) as proxy:
        config = demo_config(
            {"root": f"s3://{BUCKET}/faulty-lake-{engine}", "engine": engine},
            storage={**s3_storage_section, "endpoint_url": proxy.url}, sources=s3_sources(local_ctx.config.sources),
        )
        ctx = Context.create(config, spark)
        run_stages(ctx, echo=print)
    print(proxy.report())
    lake = Lake(ctx.lake.root, Storage(StorageOptions.from_config(s3_storage_section)))  # past the proxy

    # Every kind of fault happened, on reads and on writes (Parquet parts, frames, commits).
    assert all(proxy.injected[fault] > 0 for fault in FAULTS), proxy.report()
    assert any(method == "PUT" and fault.endswith("after") for method, fault in proxy.by_method), proxy.report()
    assert ctx.lake.engine == engine

    renames = {local_ctx.lake.root: "<lake>", lake.root: "<lake>",
               str(REPO / "demo"): "<corpus>", f"s3://{BUCKET}/corpus": "<corpus>"}
    for name in TABLES:
        faulty = comparable_rows(lake, name, renames)
        assert faulty == comparable_rows(local_ctx.lake, name, renames), name
        assert len(set(faulty)) == len(faulty), f"{name}: duplicate rows"
    # Every frame object the table lists is there, with the bytes its sha256 names.
    frames = lake.read_arrow("frames", ["uri", "bytes"]).to_pylist()
    sizes = {f"s3://{BUCKET}/{o['Key']}": o["Size"]
             for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET,
                                                                           Prefix=f"faulty-lake-{engine}/frames/")
             for o in page.get("Contents", [])}
    assert {f["uri"]: f["bytes"] for f in frames} == sizes


def test_commits_whose_response_is_lost_are_recognised(spark, s3_endpoint, s3_storage_section):
    """Every Delta commit is applied by the store and its response lost (a 500 after the PUT):
    the writes still succeed once each, whether they create, overwrite or append. (delta-rs:
    its commits are create-if-absent PUTs; delta-spark's lost commits are
    tests/framelake/test_lake.py's.)"""
    from udfs.schemas import SHARDS, to_spark_schema

    with FaultProxy(s3_endpoint, rate=0.0, lost_create_every=2) as proxy:  # every first try of a commit
        storage = Storage(StorageOptions.from_config({**s3_storage_section, "endpoint_url": proxy.url}))
        lake = Lake(f"s3://{BUCKET}/lost-commits", storage, spark, engine="delta-rs")
        first, second = shard_rows(3, "a"), shard_rows(2, "b")
        lake.write("shards", spark.createDataFrame(first, to_spark_schema(SHARDS)))
        lake.write("shards", spark.createDataFrame(second, to_spark_schema(SHARDS)))
        assert sorted(lake.read_arrow("shards").to_pylist(), key=str) == sorted(second, key=str)
        lake.write("shards", spark.createDataFrame(first, to_spark_schema(SHARDS)), mode="append")
        assert sorted(lake.read_arrow("shards").to_pylist(), key=str) == sorted(first + second, key=str)
    assert proxy.injected["500-after"] >= 3, proxy.report()
