"""Credentials and presigned URLs never reach logs, tables, manifests, run records, reports or
shards: a whole ``framelake run`` on a real S3-API server (moto), with media that fail while
read through presigned URLs, scanned object by object afterwards."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
import yaml

from framelake.storage import Storage, StorageOptions
from tests.support.paths import REPO
from tests.support.s3 import BUCKET, TEST_ACCESS_KEY, TEST_SECRET_KEY
from tests.support.videos import make_test_video
from udfs.redact import redact
from udfs.video import Sampling, extract_media

PREFIX = "secrets"
# What must never appear: the credentials, and what any presigned URL or signed request carries.
MARKERS = (TEST_ACCESS_KEY, TEST_SECRET_KEY, "X-Amz-Signature", "X-Amz-Credential", "Signature=")


def leaks(text: str) -> list[str]:
    return [marker for marker in MARKERS if marker.lower() in text.lower()]


@pytest.fixture(scope="module")
def corpus(s3_client, tmp_path_factory):
    """Annotations and media on S3: a good video, a text file named .mp4, a missing video."""
    local = tmp_path_factory.mktemp("secrets")
    video = make_test_video(local / "good.mp4", seconds=1.0, fps=10, size=(64, 48))
    s3_client.upload_file(str(video), BUCKET, f"{PREFIX}/media/good.mp4")
    s3_client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/media/text.mp4", Body=b"not a video\n" * 100)
    records = [{"video": name, "QA": [{"q": "What happens?", "a": "Something moves."}]}
               for name in ("good.mp4", "text.mp4", "missing.mp4")]
    s3_client.put_object(Bucket=BUCKET, Key=f"{PREFIX}/annotations/clips.json", Body=json.dumps(records).encode())
    return local


def test_redact_removes_presigned_credentials(s3_storage_section):
    url = Storage(StorageOptions.from_config(s3_storage_section)).presigned_url(f"s3://{BUCKET}/a/b.mp4")
    assert leaks(url)  # the URL does carry them
    message = f"ffmpeg failed (exit 1): {url}: Invalid data found; Credential={TEST_ACCESS_KEY}/x, Signature=abc"
    cleaned = redact(message)
    assert not leaks(cleaned)
    assert "/a/b.mp4?[redacted]" in cleaned and "Invalid data found" in cleaned and "[redacted], [redacted]" in cleaned


def test_media_failing_on_s3_report_no_credentials(s3_storage_section, corpus):
    storage = Storage(StorageOptions.from_config(s3_storage_section))
    for name in ("text.mp4", "missing.mp4"):
        result = extract_media("video", f"s3://{BUCKET}/{PREFIX}/media/{name}", storage, Sampling(timeout_s=30))
        assert result.status == "failed" and result.error
        assert not leaks(result.error), result.error


@pytest.mark.spark  # Spark runs in a subprocess
def test_a_whole_run_on_s3_leaks_no_credentials(s3_storage_section, corpus, s3_client):
    config = {
        "lake": f"s3://{BUCKET}/{PREFIX}/lake",
        "storage": s3_storage_section,
        "spark": {"master": "local[2]"},
        "sources": [{"name": "clips", "format": "videochat2", "media_type": "video",
                     "annotations": f"s3://{BUCKET}/{PREFIX}/annotations/clips.json",
                     "media_root": f"s3://{BUCKET}/{PREFIX}/media"}],
        "frames": {"fps": 1.0, "max_frames": 4, "max_side": 64, "timeout_s": 60},
        "models": [{"name": "minicpm-llama3-v2_5", "profile": "minicpm-llama3-v2_5"}],
        "shards": {"formats": ["minicpmv", "llava", "webdataset", "mimicit"], "samples_per_shard": 8},
    }
    config_path = corpus / "s3.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    run = subprocess.run(
        [sys.executable, "-m", "framelake.cli", "run", "--config", str(config_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    logs = run.stdout + run.stderr
    assert run.returncode == 0, logs[-3000:]
    assert not leaks(logs), [line for line in logs.splitlines() if leaks(line)][:5]

    pages = s3_client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/lake/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    kinds = {"_delta_log": 0, ".parquet": 0, "manifest.json": 0, "runs/": 0, "reports/": 0, "shards/": 0}
    for key in keys:
        data = s3_client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        texts = [data.decode("latin-1")]
        if key.endswith(".parquet"):
            texts.append(str(pq.read_table(io.BytesIO(data)).to_pylist()))
        for text in texts:
            assert not leaks(text), (key, leaks(text))
        for kind in kinds:
            kinds[kind] += kind in key
    assert all(kinds.values()), kinds  # every kind of object was there to scan

    videos = Storage(StorageOptions.from_config(s3_storage_section))
    from deltalake import DeltaTable
    rows = DeltaTable(f"s3://{BUCKET}/{PREFIX}/lake/tables/videos",
                      storage_options=videos.options.delta_rs_options()).to_pyarrow_table().to_pylist()
    statuses = {row["uri"].rsplit("/", 1)[-1]: (row["status"], row["error"]) for row in rows}
    assert statuses["good.mp4"][0] == "ok"
    assert statuses["text.mp4"][0] == "failed" and statuses["missing.mp4"][0] == "failed"
