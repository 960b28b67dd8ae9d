"""The whole pipeline with the lake, annotations and media on a real S3-API server."""
from __future__ import annotations

from deltalake import DeltaTable

from framelake.runtime import Context
from jobs.pipeline import run_stages
from tests.support.config import demo_config
from tests.support.paths import REPO
from tests.support.s3 import BUCKET, TEST_SECRET_KEY, s3_sources, upload_demo
from tests.support.tables import comparable_rows, written_tables


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
    assert written_tables(ctx.lake) == written_tables(local_ctx.lake)
    for name in written_tables(ctx.lake):
        remote = DeltaTable(ctx.lake.table_uri(name), storage_options=options).to_pyarrow_table()
        local = DeltaTable(local_ctx.lake.table_uri(name)).to_pyarrow_table()
        assert remote.num_rows == local.num_rows, name
    def ids(c):
        return sorted(c.lake.read_arrow("samples", ["source", "record_index"]).to_pylist(),
                      key=lambda r: (r["source"], r["record_index"]))

    assert ids(ctx) == ids(local_ctx)
    # Ids name no location: once their URIs are taken relative to the lake and the corpus, the
    # S3 lake's rows are the local lake's, ids and frame object names included.
    renames = {local_ctx.lake.root: "<lake>", ctx.lake.root: "<lake>",
               str(REPO / "demo"): "<corpus>", f"s3://{BUCKET}/corpus": "<corpus>"}
    for name in written_tables(ctx.lake):
        assert comparable_rows(ctx.lake, name, renames) == comparable_rows(local_ctx.lake, name, renames), name
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
