"""framelake where users run Spark: a standalone cluster fed the ``make dist`` archive, a Spark
Connect server, a run with everything on S3, and Databricks' catalog registration.

Every Spark here is real processes on 127.0.0.1 (conftest sets ``SPARK_LOCAL_IP``), each
test's own, ended (with their children) by process group when the test ends, however it ends.
Results are compared with the local demo run (``demo_run``): the same row count in every table
and the same sample ids.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pyspark
import pytest
import yaml

from framelake.config import CatalogSettings, ConfigError, load_config, parse_config
from framelake.lake import Lake, delta_spark_session_conf
from framelake.storage import Storage, StorageOptions
from tests.support.config import write_config
from tests.support.paths import REPO
from tests.support.s3 import BUCKET, TEST_ACCESS_KEY, TEST_SECRET_KEY, free_port, upload_demo
from tests.support.tables import assert_same_tables, shard_rows
from udfs.schemas import SHARDS, to_spark_schema

BIN = Path(sys.executable).parent
SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"
STARTUP_S = 180  # generous: JVMs start slowly on a loaded 2-core machine


class SparkProcesses:
    """Processes started in their own process groups, so ending a group ends the JVM and the
    executors and Python workers it started."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: list[tuple[subprocess.Popen, Path]] = []

    def start(self, name: str, cmd: list[str], env: dict | None = None, cwd: Path = REPO) -> Path:
        """Starts ``cmd``; returns the file its output goes to."""
        log = self.log_dir / f"{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                env={**os.environ, **(env or {})}, start_new_session=True,
            )
        self.started.append((process, log))
        return log

    def run(self, name: str, cmd: list[str], env: dict | None = None, cwd: Path = REPO,
            timeout_s: float = 900) -> tuple[int, str]:
        """Runs ``cmd`` to its end; returns its exit code and output."""
        log = self.start(name, cmd, env, cwd)
        process = self.started[-1][0]
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} still running after {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")
        return code, log.read_text()

    def wait_for(self, log: Path, text: str) -> None:
        """Waits until ``text`` shows up in a started process's output."""
        process = next(p for p, path in self.started if path == log)
        deadline = time.monotonic() + STARTUP_S
        while text not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{log.stem} never said {text!r}:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)

    def stop_all(self) -> None:
        for process, _ in reversed(self.started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in self.started:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture
def spark_processes(tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    processes = SparkProcesses(log_dir)
    try:
        yield processes
    finally:
        processes.stop_all()


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """``make dist`` into a temp folder: the wheel and ``framelake-pyfiles.zip``."""
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(["make", "dist", f"DIST={out}"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory) -> str:
    """A Python with framelake's dependencies but not framelake: whatever of framelake it runs
    comes from the archive or wheel it is given. (The dependencies' folder is added as a plain
    path, so the editable install's hook in it is not run.)"""
    env = tmp_path_factory.mktemp("bare-python")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    purelib = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "framelake-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    assert subprocess.run([python, "-c", "import framelake"], cwd=env, capture_output=True).returncode != 0
    return str(python)


# -- make dist ---------------------------------------------------------------------------------

def test_dist_carries_every_package_and_the_model_profiles(dist):
    wheel = next(dist.glob("framelake-*.whl"))
    for archive in (wheel, dist / "framelake-pyfiles.zip"):
        names = set(zipfile.ZipFile(archive).namelist())
        for path in ("framelake/config.py", "jobs/pipeline.py", "udfs/adapters/videochat2.py"):
            assert path in names, (archive.name, path)
        profiles = {Path(n).name for n in names if n.startswith("framelake/profiles/") and n.endswith(".yaml")}
        assert profiles == {p.name for p in (REPO / "conf" / "models").glob("*.yaml")}, archive.name


def test_installed_wheel_finds_its_model_profiles(dist, bare_python, tmp_path):
    site = tmp_path / "site"
    wheel = next(dist.glob("framelake-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", site, wheel],
                   check=True)
    check = (
        "from framelake.config import builtin_profile_dir, load_config\n"
        "print(builtin_profile_dir())\n"
        f"print(*(m.name for m in load_config({str(REPO / 'conf' / 'local.yaml')!r}).models))\n"
    )
    result = subprocess.run([bare_python, "-c", check], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(site)},
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    profile_dir, models = result.stdout.splitlines()
    assert profile_dir == str(site / "framelake" / "profiles")
    assert models.split() == [m.name for m in load_config("conf/local.yaml").models]


# -- a standalone cluster ----------------------------------------------------------------------

def delta_submit_args(engine: str) -> list[str]:
    """spark-submit's settings for the engine: Delta's jars and extensions for delta-spark, as a
    user passes them (framelake gives them only to sessions it starts itself), and Delta's state
    rebuilt in 2 tasks, as framelake's local sessions do, for the demo's small tables."""
    if engine != "delta-spark":
        return []
    conf = {**delta_spark_session_conf(), "spark.databricks.delta.snapshotPartitions": "2"}
    return [arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")]


@pytest.mark.spark  # Spark runs in a subprocess
@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_standalone_cluster_runs_the_archive_with_the_local_result(demo_run, dist, bare_python, spark_processes,
                                                                   tmp_path, engine):
    demo_ctx, _ = demo_run
    master_url = f"spark://127.0.0.1:{free_port()}"
    daemon = {"SPARK_DAEMON_MEMORY": "512m"}
    master = spark_processes.start("master", [
        SPARK_CLASS, "org.apache.spark.deploy.master.Master",
        "--host", "127.0.0.1", "--port", master_url.rsplit(":", 1)[1], "--webui-port", "0",
    ], daemon)
    spark_processes.wait_for(master, "I have been elected leader")
    workers = [
        spark_processes.start(f"worker{i}", [
            SPARK_CLASS, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
            "--cores", "1", "--memory", "1g", "--webui-port", "0", "--work-dir", tmp_path / f"worker{i}", master_url,
        ], daemon)
        for i in (1, 2)
    ]
    for worker in workers:
        spark_processes.wait_for(worker, "Successfully registered with master")

    lake = tmp_path / "lake"
    # The driver and the executors run a Python without framelake: all of it comes from the archive.
    code, output = spark_processes.run("submit", [
        BIN / "spark-submit", "--master", master_url, "--py-files", dist / "framelake-pyfiles.zip",
        "--executor-memory", "1g", "--conf", "spark.ui.enabled=false", *delta_submit_args(engine),
        "jobs/pipeline.py", "--config", write_config(tmp_path, lake={"root": str(lake), "engine": engine}),
    ], env={"PYSPARK_PYTHON": bare_python, "PYSPARK_DRIVER_PYTHON": bare_python})
    assert code == 0, output[-4000:]
    assert "[pipeline]" in output and f"(engine: {engine})" in output
    for worker in workers:  # the master gave each worker an executor of the run
        assert "Asked to launch executor" in worker.read_text(), worker.stem
    assert_same_tables(Lake(str(lake), Storage()), demo_ctx)


# -- Spark Connect -----------------------------------------------------------------------------

def test_spark_remote_comes_from_the_config_or_spark_remote(monkeypatch):
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    monkeypatch.delenv("SPARK_REMOTE", raising=False)
    assert parse_config(raw).spark.remote is None
    assert parse_config({**raw, "spark": {"remote": "sc://db.example:443"}}).spark.remote == "sc://db.example:443"
    monkeypatch.setenv("SPARK_REMOTE", "sc://127.0.0.1:15002")
    assert parse_config(raw).spark.remote == "sc://127.0.0.1:15002"


@pytest.mark.spark  # Spark runs in a subprocess
@pytest.mark.parametrize("engine", ["delta-rs", "delta-spark"])
def test_spark_connect_runs_the_pipeline_with_the_local_result(demo_run, spark_processes, tmp_path, engine):
    """A Connect server started with Delta's jars and extensions gives the client the
    delta-spark engine by itself (``auto``), as a Databricks cluster does."""
    demo_ctx, _ = demo_run
    port = free_port()
    server = spark_processes.start("connect-server", [
        BIN / "spark-submit", "--class", "org.apache.spark.sql.connect.service.SparkConnectServer",
        "--master", "local[2]", "--conf", "spark.ui.enabled=false",
        "--conf", "spark.connect.grpc.binding.address=127.0.0.1", "--conf", f"spark.connect.grpc.binding.port={port}",
        # The server's setting: framelake's client only asks for its own session.
        "--conf", "spark.sql.shuffle.partitions=8", *delta_submit_args(engine),
        "spark-internal",
    ])
    spark_processes.wait_for(server, "Spark Connect server started")

    lake = tmp_path / "lake"
    config = write_config(tmp_path, lake={"root": str(lake), "engine": "auto"},
                          spark={"remote": f"sc://127.0.0.1:{port}"})
    code, output = spark_processes.run("client", [BIN / "framelake", "run", "--config", config])
    assert code == 0, output[-4000:]
    assert f"engine: {engine}" in output
    assert "Spark Connect - session_id" in server.read_text()  # the stages' jobs ran on the server
    assert_same_tables(Lake(str(lake), Storage()), demo_ctx)


# -- everything on S3 --------------------------------------------------------------------------

@pytest.mark.spark  # Spark runs in a subprocess
def test_pipeline_with_everything_on_s3_leaves_no_local_files(s3_client, demo_run, s3_storage_section, spark_processes,
                                                             tmp_path):
    """The config, annotations, media and lake on the S3 server; the driver, executors and
    Python workers get a temp folder of their own, which must be empty afterwards."""
    demo_ctx, _ = demo_run
    client = s3_client
    upload_demo(client)
    # conf/cluster.yaml's lake, storage and sources, on the test server; the demo's other settings.
    example = yaml.safe_load((REPO / "conf" / "cluster.yaml").read_text().replace("s3://my-bucket/", f"s3://{BUCKET}/"))
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    raw.update(lake=f"s3://{BUCKET}/s3-only/lake", sources=example["sources"],
               storage={**example["storage"], "endpoint_url": s3_storage_section["endpoint_url"], "allow_http": True})
    config_text = yaml.safe_dump(raw)
    assert TEST_SECRET_KEY not in config_text and TEST_ACCESS_KEY not in config_text
    client.put_object(Bucket=BUCKET, Key="s3-only/cluster.yaml", Body=config_text.encode())

    temp, workdir = tmp_path / "temp", tmp_path / "workdir"
    temp.mkdir()
    workdir.mkdir()
    code, output = spark_processes.run("submit", [
        BIN / "spark-submit", "--master", "local[2]", "--conf", "spark.ui.enabled=false",
        "--driver-java-options", f"-Djava.io.tmpdir={temp}",
        REPO / "jobs" / "pipeline.py", "--config", f"s3://{BUCKET}/s3-only/cluster.yaml",
    ], env={
        "AWS_ACCESS_KEY_ID": TEST_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": TEST_SECRET_KEY, "AWS_REGION": "us-east-1",
        # The endpoint is only in the config on S3; reading that config needs it from here.
        "AWS_ENDPOINT_URL": s3_storage_section["endpoint_url"],
        "TMPDIR": str(temp), "SPARK_LOCAL_DIRS": str(temp),
    }, cwd=workdir)
    assert code == 0, output[-4000:]
    assert TEST_SECRET_KEY not in output

    lake = Lake(raw["lake"], Storage(StorageOptions.from_config(s3_storage_section)))
    assert_same_tables(lake, demo_ctx)
    stored = [uri for name in ("videos", "frames") for uri in lake.read_arrow(name, ["uri"]).column("uri").to_pylist()]
    stored += lake.read_arrow("shards", ["shard_path"]).column("shard_path").to_pylist()
    assert stored and all(uri.startswith(f"s3://{BUCKET}/") for uri in stored)
    assert list(temp.rglob("*")) == []
    assert list(workdir.rglob("*")) == []


# -- Databricks: native Delta and catalog names --------------------------------------------------

def test_catalog_is_validated():
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    catalog = {"name": "main", "schema": "framelake"}
    assert parse_config({**raw, "catalog": catalog}).catalog == CatalogSettings("main", "framelake")
    assert parse_config(raw).catalog is None
    with pytest.raises(ConfigError, match=r"catalog\.schema: required"):
        parse_config({**raw, "catalog": {"name": "main"}})
    with pytest.raises(ConfigError, match=r"catalog\.name: must be one identifier"):
        parse_config({**raw, "catalog": {"name": "main.x", "schema": "framelake"}})


def test_tables_are_registered_by_name_at_their_path(monkeypatch):
    catalog = CatalogSettings("main", "framelake")
    lake = Lake("s3://bucket/lake", Storage(), engine="delta-spark", catalog=catalog)
    assert lake.register_sql("samples") == (
        "CREATE TABLE IF NOT EXISTS `main`.`framelake`.`samples` USING DELTA LOCATION 's3a://bucket/lake/tables/samples'"
    )
    monkeypatch.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")  # Databricks reads s3:// itself
    assert lake.register_sql("frames").endswith("LOCATION 's3://bucket/lake/tables/frames'")
    assert Lake("/data/it's", Storage(), engine="delta-spark", catalog=catalog).register_sql("shards").endswith(
        r"LOCATION '/data/it\'s/tables/shards'"
    )


def test_catalog_without_delta_spark_keeps_tables_by_path(spark, tmp_path):
    with pytest.warns(UserWarning, match="needs delta-spark"):
        lake = Lake(str(tmp_path), Storage(), spark, engine="delta-rs",
                    catalog=CatalogSettings("spark_catalog", "by_path"))
    lake.write("shards", spark.createDataFrame([], to_spark_schema(SHARDS)))
    assert lake.engine == "delta-rs" and lake.exists("shards")
    assert not spark.catalog.databaseExists("spark_catalog.by_path")


def test_delta_spark_registers_each_table_written_in_spark_s_catalog(spark, tmp_path):
    lake = Lake(str(tmp_path), Storage(), spark, engine="delta-spark",
                catalog=CatalogSettings("spark_catalog", "framelake_registered"))
    lake.write("shards", spark.createDataFrame(shard_rows(3), to_spark_schema(SHARDS)))
    lake.write("shards", spark.createDataFrame(shard_rows(1, "n"), to_spark_schema(SHARDS)), mode="append")
    assert spark.catalog.tableExists("spark_catalog.framelake_registered.shards")
    table = spark.sql("DESCRIBE DETAIL spark_catalog.framelake_registered.shards").first()
    assert table["format"] == "delta" and table["location"].rstrip("/").endswith(lake.table_uri("shards"))
    assert spark.table("spark_catalog.framelake_registered.shards").count() == 4  # by name: the table itself
