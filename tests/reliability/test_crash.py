"""Crash and resume, executor loss and exit codes, as a user meets them: ``framelake run`` as a
subprocess, killed with SIGKILL at failpoints (``framelake/failpoints.py``), then the same
command again. Whatever the kill left, the rerun's tables and shards equal those of one
uninterrupted run, and ``framelake vacuum`` removes what the killed run left unreferenced. The
kill points that cross a commit run on both engines too, and resume to the tables and shards
of the same uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from framelake.lake import Lake
from framelake.storage import Storage
from tests.support.paths import REPO
from tests.support.tables import TABLE_KEYS
from udfs.schemas import TABLES

BIN = os.path.dirname(sys.executable)
# The command every run of a test uses: a crashed run is resumed by running it again as it was.
MAX_REJECT_RATE = "0.5"


def write_config(folder: Path, engine: str = "delta-rs") -> str:
    """The demo config with one model (the second only doubles the time) on ``folder/lake``; 3
    waves of frames (12 media), so a kill can fall between waves; tasks retried as on a
    cluster (``local[2,3]``: 3 attempts)."""
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    raw["lake"] = {"root": str(folder / "lake"), "engine": engine}
    raw["models"] = raw["models"][:1]
    raw["frames"]["wave_size"] = 4
    raw["spark"] = {"master": "local[2,3]", "conf": {"spark.ui.enabled": "false"}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def framelake(*args: str, failpoints: str = "", once_dir: Path | None = None,
              timeout: int = 600) -> subprocess.CompletedProcess:
    """``framelake ARGS`` in its own process group; a killed driver's Spark JVM and Python
    workers, which die on their own once it is gone, are waited for (then killed) so no old
    task writes into the lake while the rerun works."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
           "SPARK_LOCAL_IP": "127.0.0.1"}
    env.pop("FRAMELAKE_FAILPOINTS", None)
    if failpoints:
        env.update(FRAMELAKE_FAILPOINTS=failpoints, FRAMELAKE_FAILPOINTS_ONCE=str(once_dir))
    process = subprocess.Popen([os.path.join(BIN, "framelake"), *args], cwd=REPO, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        _reap_group(process.pid)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def _reap_group(group: int, wait_s: float = 30) -> None:
    deadline = time.time() + wait_s
    while time.time() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass


def lake_of(config: str) -> Lake:
    return Lake(yaml.safe_load(Path(config).read_text())["lake"]["root"], Storage())


def lake_state(lake: Lake) -> dict:
    """What two runs must agree on: per table its row count and checksum, the content of each
    file under ``shards/``."""
    state = {name: lake.checksum(name) for name in TABLES}
    shards_root = Path(lake.uri("shards"))
    for path in sorted(p for p in shards_root.rglob("*") if p.is_file()):
        state[str(path.relative_to(shards_root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


def assert_consistent(lake: Lake) -> None:
    """No table holds two rows with one key; no half or unlisted shard file: every file under
    ``shards/`` is a manifest or a shard its manifest lists, with the size and digest listed."""
    for name, key in TABLE_KEYS.items():
        rows = lake.read_arrow(name, key).to_pylist()
        keys = [tuple(row[c] for c in key) for row in rows]
        assert len(keys) == len(set(keys)), f"{name}: duplicate keys"
    listed = {}
    for manifest in Path(lake.uri("shards")).rglob("manifest.json"):
        for row in json.loads(manifest.read_text())["shards"]:
            listed[row["shard_path"]] = row
    shard_files = {str(p) for p in Path(lake.uri("shards")).rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert shard_files == set(listed), "shard files and manifests disagree"
    for path, row in listed.items():
        data = Path(path).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (row["bytes"], row["sha256"]), path
    assert shard_files == set(lake.read_arrow("shards", ["shard_path"]).column("shard_path").to_pylist())


def unreferenced_table_files(lake: Lake) -> list[str]:
    """Parquet files under table roots that the current version of no table's Delta log lists
    (delta-spark's overwrites leave the files they removed there until a vacuum)."""
    found = []
    for name in TABLES:
        folder = Path(lake.table_uri(name))
        table = lake.delta_table(name)
        committed = set(table.file_uris()) if table is not None else set()
        found += [str(p) for p in folder.glob("*.parquet") if str(p) not in committed]
    return found


@pytest.fixture(scope="module")
def lake_folder(tmp_path_factory) -> Path:
    """Where every run of these tests keeps its lake, one after the other: rows name the lake
    (frame URIs, ids of inline images), so runs compare only at the same root."""
    return tmp_path_factory.mktemp("runs")


@pytest.fixture
def config(lake_folder) -> str:
    """The config of a run on an empty lake."""
    shutil.rmtree(lake_folder / "lake", ignore_errors=True)
    return write_config(lake_folder)


@pytest.fixture(scope="module")
def reference(lake_folder) -> dict:
    """The state of one uninterrupted run, which exits 0 though records were rejected and a
    video failed (record failures are rows, not errors). Both engines make the same tables
    (``tests/jobs/test_pipeline.py``), so a run on either engine resumes to it."""
    shutil.rmtree(lake_folder / "lake", ignore_errors=True)
    config = write_config(lake_folder)
    result = framelake("run", "--config", config, "--max-reject-rate", MAX_REJECT_RATE)
    assert result.returncode == 0, result.stderr[-3000:]
    lake = lake_of(config)
    assert lake.info("rejects").rows > 0
    assert "failed" in lake.read_arrow("videos", ["status"]).column("status").to_pylist()
    assert_consistent(lake)
    return lake_state(lake)


CRASH_POINTS = [
    ("delta-rs", "normalize.after_samples=kill"),  # samples committed, rejects and source_files not
    ("delta-rs", "frames.between_commits=kill@2"),  # wave 2: frames rows committed, videos rows not
    ("delta-rs", "lake.before_commit=kill@6"),  # a wave's Parquet under an existing table, uncommitted
    ("delta-rs", "tokens.map=kill-driver"),  # driver killed while executors count tokens
    ("delta-rs", "shards.after_first_shard=kill-driver"),  # shard files written, no manifest
    ("delta-spark", "frames.between_commits=kill@2"),
    ("delta-spark", "lake.after_spark_commit=kill@2"),  # rejects committed, source_files not
]


@pytest.mark.spark  # Spark runs in a subprocess
@pytest.mark.parametrize("engine, failpoint", CRASH_POINTS, ids=[f"{e}:{p.split('=')[0]}" for e, p in CRASH_POINTS])
def test_a_run_killed_at_a_failpoint_resumes_to_the_same_tables_and_shards(reference, lake_folder, tmp_path, engine,
                                                                          failpoint, record_property):
    shutil.rmtree(lake_folder / "lake", ignore_errors=True)
    config = write_config(lake_folder, engine)
    once = tmp_path / "failpoints-fired"
    command = ("run", "--config", config, "--max-reject-rate", MAX_REJECT_RATE)
    killed = framelake(*command, failpoints=failpoint, once_dir=once)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert (once / failpoint.split("=")[0]).exists()
    lake = lake_of(config)
    orphans_after_kill = unreferenced_table_files(lake)
    if failpoint.startswith("lake.before_commit"):
        assert orphans_after_kill, "the killed write left no Parquet file behind"

    rerun = framelake(*command, failpoints=failpoint, once_dir=once)  # the same command, the same environment
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert_consistent(lake)
    assert lake_state(lake) == reference
    # Orphans are never read: the tables equal the reference while they are still there.
    assert set(orphans_after_kill) <= set(unreferenced_table_files(lake))

    vacuum = framelake("vacuum", "--config", config, "--retention-hours", "0")
    assert vacuum.returncode == 0, vacuum.stderr
    removed = int(vacuum.stdout.splitlines()[-1].split()[1])  # "removed N file(s) older than ..."
    assert removed >= len(orphans_after_kill)
    record_property("orphan_parquet_after_kill", len(orphans_after_kill))  # figures for docs/reliability.md
    record_property("vacuum", vacuum.stdout)
    assert unreferenced_table_files(lake) == []
    assert lake_state(lake) == reference


@pytest.mark.spark  # Spark runs in a subprocess
def test_a_python_worker_killed_mid_task_is_retried_to_the_same_result(reference, config, tmp_path):
    once = tmp_path / "failpoints-fired"
    result = framelake("run", "--config", config, "--max-reject-rate", MAX_REJECT_RATE,
                       failpoints="tokens.map=kill", once_dir=once)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (once / "tokens.map").exists()  # a worker did die
    lake = lake_of(config)
    assert_consistent(lake)
    assert lake_state(lake) == reference


@pytest.mark.spark  # Spark runs in a subprocess
def test_too_many_rejects_is_a_failure_of_its_own(config):
    result = framelake("run", "--config", config, "--stages", "normalize", "--max-reject-rate", "0.1")
    lake = lake_of(config)
    rejected, records = lake.info("rejects").rows, lake.info("rejects").rows + lake.info("samples").rows
    assert result.returncode == 4, result.stderr[-3000:]
    assert f"reject rate {rejected / records:.3f} ({rejected} of {records} records) is over --max-reject-rate 0.1" \
        in result.stderr
    assert "[normalize]" in result.stdout  # the summary is still there


@pytest.mark.spark  # Spark runs in a subprocess
def test_an_unreachable_lake_fails_with_one_line_and_exit_3(config, tmp_path):
    raw = yaml.safe_load(Path(config).read_text())
    (tmp_path / "not-a-folder").write_text("")
    raw["lake"]["root"] = str(tmp_path / "not-a-folder" / "lake")
    Path(config).write_text(yaml.safe_dump(raw))
    result = framelake("run", "--config", config)
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-3000:]
    ours = [line for line in result.stderr.splitlines() if line.startswith("framelake:")]
    assert len(ours) == 1 and ours[0].startswith("framelake: run failed: ") and len(ours[0]) <= 330
    # the cause, whether the driver or a task met it first (then Spark's PythonException wraps it)
    assert "NotADirectoryError: [Errno 20] Not a directory" in ours[0]
    # Spark logs the failed task's worker traceback itself; framelake's own is kept for --debug.
    assert "framelake/cli.py" not in result.stderr
    assert "framelake/cli.py" in framelake("run", "--config", config, "--debug", "--stages", "normalize").stderr


def test_vacuum_dry_run_lists_orphans_and_keeps_them(config):
    """Orphans of every kind: Parquet of an uncommitted first write, a frame JPEG and a shard
    file no row references; young ones survive the default retention."""
    lake = lake_of(config)
    orphans = [Path(lake.table_uri("frames")) / "part-orphan.zstd.parquet",
               Path(lake.uri("frames")) / "gone" / "00000.jpg", Path(lake.uri("shards")) / "m" / "llava" / "x.json"]
    for path in orphans:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    dry_run = framelake("vacuum", "--config", config, "--dry-run", "--retention-hours", "0")
    assert "would remove 3 file(s)" in dry_run.stdout
    assert "removed 0 file(s)" in framelake("vacuum", "--config", config).stdout  # younger than 168 h
    assert all(p.exists() for p in orphans)
    assert "removed 3 file(s)" in framelake("vacuum", "--config", config, "--retention-hours", "0").stdout
    assert not any(p.exists() for p in orphans)
