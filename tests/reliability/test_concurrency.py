"""Two runs on one lake: the lake's run lock (framelake/lock.py) lets one write, the other stops
with a clear message, and a rerun completes with the tables a single run makes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from framelake.cli import EXIT_LAKE_BUSY
from framelake.lock import LakeLock, LakeLockedError, lake_lock
from framelake.storage import Storage, StorageOptions
from tests.support.paths import REPO
from tests.support.s3 import BUCKET
from tests.support.tables import TABLE_KEYS, comparable_rows, written_tables

HOLDER = """
import sys, time
from framelake.lock import LakeLock
from framelake.storage import Storage
lock = LakeLock(Storage(), sys.argv[1], "killed-run")
lock.acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_live_lease_refuses_a_second_run_and_is_released_at_the_end(tmp_path):
    lake = str(tmp_path / "lake")
    with lake_lock(Storage(), lake, "first-run") as held:
        with lake_lock(Storage(), lake) as nested:  # the pipeline and its stages share the lease
            assert nested is held
        with pytest.raises(LakeLockedError, match=r"is in use by run first-run on host .* pid \d+ since .*heartbeat"):
            LakeLock(Storage(), lake, "second-run").acquire()
        held.heartbeat()
        held.check()  # still ours after a heartbeat
    assert not os.path.exists(f"{lake}/_locks/run.json")
    with lake_lock(Storage(), lake, "second-run"):
        assert json.load(open(f"{lake}/_locks/run.json"))["run_id"] == "second-run"


def test_the_lease_of_a_killed_run_is_taken_over_at_once(tmp_path):
    lake = str(tmp_path / "lake")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, lake], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LakeLockedError, match="in use by run killed-run"):
            LakeLock(Storage(), lake, "rerun").acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait()  # reaped: a zombie would still answer kill(pid, 0)
    finally:
        holder.kill()
    # Same host, dead pid: no need to wait for the heartbeat to expire.
    with LakeLock(Storage(), lake, "rerun", stale_after_s=3600) as lock:
        assert lock.lease.run_id == "rerun"
        assert json.load(open(f"{lake}/_locks/run.json"))["run_id"] == "rerun"


def test_s3_lease_is_created_atomically_and_taken_over_once_stale(s3_client, s3_storage_section):
    storage = Storage(StorageOptions.from_config(s3_storage_section))
    lake = f"s3://{BUCKET}/locked-lake"
    client = s3_client
    lease_key = "locked-lake/_locks/run.json"
    with LakeLock(storage, lake, "s3-first"):
        with pytest.raises(LakeLockedError, match="in use by run s3-first"):
            LakeLock(storage, lake, "s3-second").acquire()
    with pytest.raises(client.exceptions.ClientError):  # released: deleted
        client.head_object(Bucket=BUCKET, Key=lease_key)

    # A holder on another host stopped heartbeating: live until stale_after_s, then taken over.
    abandoned = {"run_id": "abandoned", "host": "elsewhere", "pid": 1, "started_at": 0.0, "heartbeat_at": 0.0}
    client.put_object(Bucket=BUCKET, Key=lease_key, Body=json.dumps(abandoned).encode())
    with pytest.raises(LakeLockedError, match="in use by run abandoned on host elsewhere"):
        LakeLock(storage, lake, "s3-third", stale_after_s=3600).acquire()
    time.sleep(2.5)  # the lease's age is measured on the store's clock, in whole seconds
    with LakeLock(storage, lake, "s3-third", stale_after_s=1):
        stored = json.loads(client.get_object(Bucket=BUCKET, Key=lease_key)["Body"].read())
        assert stored["run_id"] == "s3-third"
    with pytest.raises(client.exceptions.ClientError):
        client.head_object(Bucket=BUCKET, Key=lease_key)


def framelake_run(config_path: str) -> subprocess.Popen:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    return subprocess.Popen([sys.executable, "-m", "framelake.cli", "run", "--config", config_path], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.spark  # Spark runs in a subprocess
def test_two_runs_at_once_leave_consistent_tables(tmp_path, demo_run):
    local_ctx, _ = demo_run
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    lake = str(tmp_path / "lake")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({**raw, "lake": lake, "spark": {**raw["spark"], "master": "local[1]"}}))

    runs = [framelake_run(str(config_path)) for _ in range(2)]
    outcomes = [(*run.communicate(), run.returncode) for run in runs]  # (stdout, stderr, exit code)
    assert 0 in [code for _, _, code in outcomes], outcomes
    for _, stderr, code in outcomes:
        assert code == 0 or (code == EXIT_LAKE_BUSY and f"lake {lake} is in use by run" in stderr), (code, stderr)
    rerun = framelake_run(str(config_path))
    _, rerun_err = rerun.communicate()
    assert rerun.returncode == 0, rerun_err

    from framelake.runtime import Context
    from tests.support.config import demo_config

    ctx = Context.create(demo_config(lake), local_ctx.spark)
    renames = {local_ctx.lake.root: "<lake>", lake: "<lake>"}
    assert written_tables(ctx.lake) == written_tables(local_ctx.lake)
    for name in written_tables(ctx.lake):
        keys = ctx.lake.read_arrow(name, list(TABLE_KEYS[name])).to_pylist()
        assert len({tuple(k.values()) for k in keys}) == len(keys), f"{name}: duplicate keys"
        expected = comparable_rows(local_ctx.lake, name, renames)
        assert comparable_rows(ctx.lake, name, renames) == expected, name
    assert not os.path.exists(f"{lake}/_locks/run.json")
