"""The whole pipeline with the lake, annotations and media on a real S3-API server."""
from __future__ import annotations

import os

from deltalake import DeltaTable

from framelake.runtime import Context
from jobs.pipeline import run_stages
from tests.conftest import REPO, TEST_SECRET_KEY, demo_config
from udfs.schemas import TABLES

BUCKET = "framelake-test"


def upload_demo(client) -> None:
    for folder, _, files in os.walk(REPO / "demo"):
        for name in files:
            path = os.path.join(folder, name)
            client.upload_file(path, BUCKET, "corpus/" + os.path.relpath(path, REPO / "demo"))


def s3_sources(demo_sources) -> list[dict]:
    """The demo's sources, pointed at the uploaded copy of the corpus."""
    local_root = str(REPO / "demo")
    remote = f"s3://{BUCKET}/corpus"
    return [
        {"name": s.name, "format": s.format, "annotations": s.annotations.replace(local_root, remote),
         "media_root": s.media_root.replace(local_root, remote),
         **({"media_type": s.media_type} if s.media_type else {})}
        for s in demo_sources
    ]


def test_pipeline_on_s3_matches_the_local_run(s3_client, spark, s3_storage_section, demo_run):
    local_ctx, _ = demo_run
    client = s3_client
    upload_demo(client)
    config = demo_config(
        f"s3://{BUCKET}/lake", storage=s3_storage_section, sources=s3_sources(local_ctx.config.sources)
    )
    ctx = Context.create(config, spark)
    run_stages(ctx, echo=lambda line: None)

    options = ctx.storage.options.delta_rs_options()
    for name in TABLES:
        remote = DeltaTable(ctx.lake.table_uri(name), storage_options=options).to_pyarrow_table()
        local = DeltaTable(local_ctx.lake.table_uri(name)).to_pyarrow_table()
        assert remote.num_rows == local.num_rows, name
    ids = lambda c: sorted(c.lake.read_arrow("samples", ["source", "record_index"]).to_pylist(),
                           key=lambda r: (r["source"], r["record_index"]))
    assert ids(ctx) == ids(local_ctx)
    statuses = sorted(ctx.lake.read_arrow("videos", ["status"]).column("status").to_pylist())
    assert statuses == sorted(local_ctx.lake.read_arrow("videos", ["status"]).column("status").to_pylist())
    frame_keys = client.list_objects_v2(Bucket=BUCKET, Prefix="lake/frames/")["KeyCount"]
    assert frame_keys == ctx.lake.info("frames").rows
    shard_keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="lake/shards/")["Contents"]]
    assert any(k.endswith(".tar") for k in shard_keys) and any(k.endswith("manifest.json") for k in shard_keys)
    # Errors and tables never carry the secret (presigned URLs are replaced by the s3:// URI).
    for name in ("videos", "rejects"):
        assert TEST_SECRET_KEY not in str(ctx.lake.read_arrow(name).to_pylist())
        assert "X-Amz-Signature" not in str(ctx.lake.read_arrow(name).to_pylist())
