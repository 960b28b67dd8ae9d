"""Shared test fixtures: one SparkSession per run, the demo lake built once, a real S3 server.

Tests that only read the demo lake use ``demo_run``; it runs the whole pipeline once per
session with a real local SparkSession, real ffmpeg and real tokenizers.

Markers (pyproject.toml): a test whose fixtures include ``spark`` or ``demo_run``, directly or
through another fixture, is marked ``spark``; one whose fixtures include ``s3_endpoint`` is
marked ``s3``. Tests that start Spark only in a subprocess carry ``spark`` themselves.
``pytest -m "not spark and not s3"`` runs the rest without a JVM or the S3 server.
"""
from __future__ import annotations

import os
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

SPARK_FIXTURES = {"spark", "demo_run"}
S3_FIXTURES = {"s3_endpoint"}


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


@pytest.fixture(scope="session")
def spark():
    from framelake.config import SparkSettings
    from framelake.runtime import get_spark

    # framelake's own session defaults, with a 2 GB driver and fewer shuffle partitions.
    session = get_spark(SparkSettings(master="local[2]", conf={
        "spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "4", "spark.driver.memory": "2g"}),
        app_name="framelake-tests")
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
