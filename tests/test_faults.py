"""The whole pipeline on S3 through a proxy failing about 10% of requests (tests/faultproxy.py):
boto3, delta-rs and ffmpeg retry, and the tables come out as a fault-free run's."""
from __future__ import annotations

import re


from framelake.lake import Lake
from framelake.runtime import Context
from framelake.storage import Storage, StorageOptions
from jobs.pipeline import run_stages
from tests.conftest import REPO, demo_config
from tests.faultproxy import FAULTS, FaultProxy
from tests.test_s3 import BUCKET, s3_sources, upload_demo
from udfs.schemas import TABLES

# Columns that differ between two correct runs: timings, the local file version (mtime) against
# the S3 one (ETag), the hash of a source's settings (they name its location), and the shards'
# bytes and hashes (shards carry media URIs).
VARYING = {"videos": {"elapsed_s"}, "source_files": {"version", "settings"}, "shards": {"bytes", "sha256"}}


def media_id_map(lake: Lake, reference: Lake) -> dict[str, str]:
    """``lake``'s media ids to ``reference``'s: ids hash the media URI, which names the corpus
    and lake location, so the same media item has another id in another lake."""
    def media(source: Lake) -> dict:
        return {row["sample_id"]: [m["media_id"] for m in row["media"]]
                for row in source.read_arrow("samples", ["sample_id", "media"]).to_pylist()}

    theirs = media(reference)
    return {mine: ref for sample_id, ids in media(lake).items() for mine, ref in zip(ids, theirs.get(sample_id, []))}


def comparable_rows(lake: Lake, name: str, renames: dict[str, str]) -> list[str]:
    """The table's rows as sorted strings, without varying columns, with ``renames`` applied
    (lake and corpus locations to placeholders, media ids to the reference's)."""
    table = lake.read_arrow(name)
    table = table.drop_columns(sorted(VARYING.get(name, set()) & set(table.column_names)))
    pattern = re.compile("|".join(re.escape(old) for old in sorted(renames, key=len, reverse=True)))
    return sorted(pattern.sub(lambda m: renames[m.group(0)], repr(sorted(row.items()))) for row in table.to_pylist())


def test_pipeline_survives_a_faulty_store_with_identical_tables(s3_client, spark, s3_endpoint, s3_storage_section, demo_run):
    local_ctx, _ = demo_run
    client = s3_client
    upload_demo(client)  # straight to the server: the faults are for the pipeline's requests
    with FaultProxy(s3_endpoint, rate=0.1, seed=8, slow_s=(1.0, 3.0), truncate_except=("/tables/",),
                    lost_create_every=3) as proxy:
        config = demo_config(
            f"s3://{BUCKET}/faulty-lake", storage={**s3_storage_section, "endpoint_url": proxy.url},
            sources=s3_sources(local_ctx.config.sources),
        )
        ctx = Context.create(config, spark)
        run_stages(ctx, echo=print)
    print(proxy.report())
    lake = Lake(ctx.lake.root, Storage(StorageOptions.from_config(s3_storage_section)))  # past the proxy

    # Every kind of fault happened, on reads and on writes (Parquet parts, frames, commits).
    assert all(proxy.injected[fault] > 0 for fault in FAULTS), proxy.report()
    assert any(method == "PUT" and fault.endswith("after") for method, fault in proxy.by_method), proxy.report()

    renames = {local_ctx.lake.root: "<lake>", lake.root: "<lake>",
               str(REPO / "demo"): "<corpus>", f"s3://{BUCKET}/corpus": "<corpus>"}
    ids = media_id_map(lake, local_ctx.lake)
    assert len(ids) == len(set(ids.values())) > 0
    for name in TABLES:
        faulty = comparable_rows(lake, name, {**renames, **ids})
        assert faulty == comparable_rows(local_ctx.lake, name, renames), name
        assert len(set(faulty)) == len(faulty), f"{name}: duplicate rows"
    # Every frame object the table lists is there, with the bytes its sha256 names.
    frames = lake.read_arrow("frames", ["uri", "bytes"]).to_pylist()
    sizes = {f"s3://{BUCKET}/{o['Key']}": o["Size"]
             for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="faulty-lake/frames/")
             for o in page.get("Contents", [])}
    assert {f["uri"]: f["bytes"] for f in frames} == sizes


def test_commits_whose_response_is_lost_are_recognised(spark, s3_endpoint, s3_storage_section):
    """Every Delta commit is applied by the store and its response lost (a 500 after the PUT):
    the writes still succeed once each, whether they create, overwrite or append."""
    from tests.test_lake import shard_rows
    from udfs.schemas import SHARDS, to_spark_schema

    with FaultProxy(s3_endpoint, rate=0.0, lost_create_every=2) as proxy:  # every first try of a commit
        storage = Storage(StorageOptions.from_config({**s3_storage_section, "endpoint_url": proxy.url}))
        lake = Lake(f"s3://{BUCKET}/lost-commits", storage, spark)
        first, second = shard_rows(3, "a"), shard_rows(2, "b")
        lake.write("shards", spark.createDataFrame(first, to_spark_schema(SHARDS)))
        lake.write("shards", spark.createDataFrame(second, to_spark_schema(SHARDS)))
        assert sorted(lake.read_arrow("shards").to_pylist(), key=str) == sorted(second, key=str)
        lake.write("shards", spark.createDataFrame(first, to_spark_schema(SHARDS)), mode="append")
        assert sorted(lake.read_arrow("shards").to_pylist(), key=str) == sorted(first + second, key=str)
    assert proxy.injected["500-after"] >= 3, proxy.report()
