"""Shared test fixtures: one SparkSession per run, the demo lake built once, a real S3 server,
a real LLM endpoint (llama-server).

Tests that only read the demo lake use ``demo_run``; it runs the whole pipeline once per
session with a real local SparkSession, real ffmpeg and real tokenizers.

Markers (pyproject.toml): a test whose fixtures include ``spark`` or ``demo_run``, directly or
through another fixture, is marked ``spark``; one whose fixtures include ``s3_endpoint`` is
marked ``s3``; one with ``llm_server``, ``llm``. Tests that start Spark only in a subprocess
carry ``spark`` themselves. ``pytest -m "not spark and not s3"`` runs the rest without a JVM or
the S3 server.
"""
from __future__ import annotations

import os
import secrets
import sys

import pytest

# The helpers' asserts report their values as a test's do.
pytest.register_assert_rewrite("tests.support")

from tests.support.config import demo_config  # noqa: E402
from tests.support.paths import REPO  # noqa: E402
from tests.support.s3 import BUCKET, TEST_ACCESS_KEY, TEST_SECRET_KEY, free_port  # noqa: E402

# Relative paths in conf/local.yaml are taken from the current directory: the repo root.
os.chdir(REPO)
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
# Spark binds to the machine's network address unless told otherwise; tests stay on loopback.
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
# The shared session has both engines' classes, so "auto" would pick delta-spark: tests run on
# delta-rs (the embedded default) unless they name delta-spark.
os.environ.setdefault("FRAMELAKE_ENGINE", "delta-rs")

SPARK_FIXTURES = {"spark", "demo_run"}
S3_FIXTURES = {"s3_endpoint"}
LLM_FIXTURES = {"llm_server"}
# The key the test LLM server requires (--api-key); the secrets tests look for it everywhere.
LLM_API_KEY = "sk-framelake-test-" + secrets.token_hex(12)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    """Marks each test by the fixtures it gets (``fixturenames`` is the whole closure: the
    fixtures its fixtures use too), before ``-m`` selects on the marks."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SPARK_FIXTURES:
            item.add_marker(pytest.mark.spark)
        if fixtures & S3_FIXTURES:
            item.add_marker(pytest.mark.s3)
        if fixtures & LLM_FIXTURES:
            item.add_marker(pytest.mark.llm)


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    from framelake.config import SparkSettings
    from framelake.runtime import get_spark

    # framelake's own session defaults, with a 2 GB driver and fewer shuffle partitions; Delta's
    # jars and extensions, so that one session serves both engines; a warehouse (where the
    # catalog tests create their schema) outside the repository.
    session = get_spark(SparkSettings(master="local[2]", conf={
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g",
        "spark.sql.warehouse.dir": str(tmp_path_factory.mktemp("warehouse")),
        "spark.databricks.delta.snapshotPartitions": "2"}),
        app_name="framelake-tests", delta_spark=True)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def demo_run(spark, tmp_path_factory):
    """(Context, stage results) of one full pipeline run on the demo corpus."""
    from framelake.runtime import Context
    from jobs.pipeline import run_stages

    ctx = Context.create(demo_config(str(tmp_path_factory.mktemp("demo") / "lake")), spark)
    results = run_stages(ctx, echo=lambda line: None)
    return ctx, results


@pytest.fixture(scope="session")
def demo_run_delta_spark(spark, tmp_path_factory):
    """``demo_run`` on the delta-spark engine."""
    from framelake.runtime import Context
    from jobs.pipeline import run_stages

    lake = {"root": str(tmp_path_factory.mktemp("demo-delta-spark") / "lake"), "engine": "delta-spark"}
    ctx = Context.create(demo_config(lake), spark)
    results = run_stages(ctx, echo=lambda line: None)
    return ctx, results


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3-API server (moto in server mode) on 127.0.0.1, with a test bucket."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    yield endpoint
    server.stop()


@pytest.fixture(scope="session")
def llm_server(tmp_path_factory):
    """llama-server on 127.0.0.1 with SmolLM2-135M-Instruct (tests/support/llm_server.py),
    requiring ``LLM_API_KEY``; one for the session. Skipped only where it is not built."""
    from tests.support.llm_server import LlamaServer, missing

    reason = missing()
    if reason:
        pytest.skip(reason)
    server = LlamaServer(tmp_path_factory.mktemp("llm"), api_key=LLM_API_KEY)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_endpoint):
    """A boto3 client straight to the test S3 server, whose bucket it creates."""
    import boto3

    client = boto3.client(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1",
        aws_access_key_id=TEST_ACCESS_KEY, aws_secret_access_key=TEST_SECRET_KEY,
    )
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture(scope="session")
def s3_storage_section(s3_endpoint, s3_client):
    """The ``storage:`` config section of the test S3 server, with its bucket."""
    return {
        "endpoint_url": s3_endpoint,
        "region": "us-east-1",
        "access_key_id": TEST_ACCESS_KEY,
        "secret_access_key": TEST_SECRET_KEY,
        "allow_http": True,
    }
