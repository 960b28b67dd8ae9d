"""The generate stage under faults, kills and a key to keep secret, against the real
llama-server: through the fault proxy (429 with Retry-After, 500, resets, slow replies) the
pairs equal a fault-free run's and the server's own log shows each request received once
plus only the retries of replies that were lost; a run killed between two waves resumes to
the same pairs without sending a request whose reply was stored; the key in the environment
is in no lake object, log or report."""
from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from framelake.lake import Lake
from framelake.runtime import Context
from framelake.storage import Storage
from jobs.generate import stage
from jobs.stage import run_stage
from tests.conftest import LLM_API_KEY
from tests.reliability.test_crash import framelake
from tests.support.config import demo_config, write_config
from tests.support.faultproxy import RATE_LIMITED, FaultProxy
from tests.support.generate import generate_section, generated, small_dc

# Faults on the way to the server, after it answered (its reply lost: sent again), and slow
# replies (within the request timeout: test_client times one out).
BEFORE = (RATE_LIMITED, "500-before", "reset-before")
AFTER = ("500-after", "reset-after")
FAULTS = (*BEFORE, *AFTER, "slow")


def comparable(lake: Lake) -> dict:
    """The generated rows, without the endpoint's address (the proxy's or the server's)."""
    return {name: [{k: v for k, v in row.items() if k != "endpoint_host"} for row in rows]
            for name, rows in generated(lake).items()}


@pytest.fixture(scope="module")
def reference(spark, llm_server, tmp_path_factory):
    """The pairs of one fault-free run."""
    os.environ["OPENAI_API_KEY"] = LLM_API_KEY
    lake = tmp_path_factory.mktemp("reference") / "lake"
    config = demo_config(str(lake), generate=generate_section(llm_server.url, [small_dc()]))
    run_stage(stage, Context.create(config, spark), echo=lambda line: None)
    return comparable(Lake(str(lake), Storage()))


def test_through_faults_the_pairs_are_a_fault_free_runs_and_no_stored_reply_is_asked_again(
        spark, llm_server, reference, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", LLM_API_KEY)
    with FaultProxy(llm_server.url, errors="json", rate=0.2, seed=4, faults=FAULTS, retry_after_s=1.0,
                    slow_s=(1.0, 2.0), script=FAULTS) as proxy:
        section = generate_section(proxy.url, [small_dc()])
        ctx = Context.create(demo_config(str(tmp_path / "lake"), generate=section), spark)
        before = llm_server.requests_received()
        counts = run_stage(stage, ctx, echo=lambda line: None).details["recipes"]["mimicit_dc"]
        received = llm_server.requests_received() - before
        print(proxy.report())
        assert all(proxy.injected[fault] for fault in FAULTS), proxy.report()
        assert counts["failed"] == 0 and counts["sent"] == len(reference["generations"])
        assert comparable(ctx.lake) == reference
        # Each request once, and once more for each reply lost after the server made it.
        assert received == counts["sent"] + sum(proxy.injected[fault] for fault in AFTER)

        before = llm_server.requests_received()
        assert run_stage(stage, ctx, echo=lambda line: None).details["recipes"]["mimicit_dc"]["sent"] == 0
        assert llm_server.requests_received() == before


@pytest.fixture(scope="module")
def killed_and_resumed(llm_server, tmp_path_factory):
    """``framelake run --stages generate`` killed after its second wave of replies came back,
    before it was committed, then run again: (lake, stored rows after the kill, requests the
    rerun sent, the two runs' output)."""
    folder = tmp_path_factory.mktemp("killed")
    config = write_config(folder, lake=str(folder / "lake"), spark={"master": "local[2]"},
                          generate=generate_section(llm_server.url, [small_dc()], wave_size=2))
    command = ("run", "--config", config, "--stages", "generate")
    env_key = {"OPENAI_API_KEY": LLM_API_KEY}
    os.environ.update(env_key)  # the subprocesses inherit it
    once = folder / "failpoints-fired"
    killed = framelake(*command, failpoints="generate.before_commit=kill@2", once_dir=once)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    lake = Lake(yaml.safe_load(Path(config).read_text())["lake"], Storage())
    stored = {row["request_key"] for row in generated(lake)["generations"]}
    before = llm_server.requests_received()
    rerun = framelake(*command, failpoints="generate.before_commit=kill@2", once_dir=once)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    return lake, stored, llm_server.requests_received() - before, killed.stdout + killed.stderr + rerun.stdout + \
        rerun.stderr


def test_a_run_killed_between_waves_resumes_to_the_same_pairs_sending_no_stored_request(
        killed_and_resumed, reference):
    lake, stored_after_kill, rerun_sent, _ = killed_and_resumed
    assert len(stored_after_kill) == 2  # the first wave; the second was lost with the kill
    assert comparable(lake) == reference
    assert rerun_sent == len(reference["generations"]) - len(stored_after_kill)


def test_the_key_is_in_no_lake_object_log_or_report(killed_and_resumed):
    lake, _, _, logs = killed_and_resumed
    assert "[generate]" in logs and LLM_API_KEY not in logs
    scanned = {"parquet": 0, "_delta_log": 0, "runs": 0, "reports": 0}
    for path in Path(lake.root).rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        texts = [data.decode("latin-1")]
        if path.suffix == ".parquet":
            texts.append(str(pq.read_table(io.BytesIO(data)).to_pylist()))
        assert not any(LLM_API_KEY in text for text in texts), path
        for kind in scanned:
            scanned[kind] += kind in str(path)
    assert all(scanned.values()), scanned  # every kind of object was there to scan
