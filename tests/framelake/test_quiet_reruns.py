"""``framelake run`` as a user runs it: framelake's progress and summary on the console, Spark's
log in a file; an unchanged rerun writes no table; a changed model is counted again; a lake
of an older layout is refused with what to do."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import yaml

from framelake.cli import EXIT_USAGE
from framelake.lake import Lake
from framelake.layout import LAYOUT_FILE
from framelake.storage import Storage, StorageOptions
from tests.support.paths import REPO
from udfs.schemas import TABLES

SPARK_LOG_LINE = re.compile(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (WARN|ERROR) \w+: ", re.MULTILINE)


def framelake_run(config_path: str) -> subprocess.CompletedProcess:
    # As a user's shell has it: no SPARK_LOCAL_IP, so Spark warns about this machine's address.
    env = {key: value for key, value in os.environ.items() if key != "SPARK_LOCAL_IP"}
    return subprocess.run([sys.executable, "-m", "framelake.cli", "run", "--config", config_path], cwd=REPO,
                          env={**env, "PYSPARK_PYTHON": sys.executable}, capture_output=True, text=True, timeout=1200)


def versions(lake: Lake) -> dict[str, int | None]:
    return {name: lake.info(name).version for name in TABLES}


def model_settings(lake: Lake) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for row in lake.read_arrow("token_lengths", ["model", "settings"]).to_pylist():
        found.setdefault(row["model"], set()).add(row["settings"])
    return found


@pytest.mark.spark  # Spark runs in the subprocesses
def test_runs_are_quiet_and_an_unchanged_rerun_writes_nothing(tmp_path):
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    lake_root = str(tmp_path / "lake")
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({**raw, "lake": lake_root}))

    first = framelake_run(str(config_path))
    console = first.stdout + first.stderr
    assert first.returncode == 0, console
    assert not re.search(r"\bWARN\b|^WARNING:|Traceback|log4j", console, re.MULTILINE), console
    [log_file] = re.findall(r"^spark log: (.+)$", first.stdout, re.MULTILINE)
    assert log_file.startswith(f"{lake_root}/logs/") and log_file.endswith("/spark.log")
    with open(log_file, encoding="utf-8") as log:
        text = log.read()
    assert SPARK_LOG_LINE.search(text), text[:2000]
    # The windows that are global on purpose (shards' buckets) do not warn.
    assert "No Partition Defined for Window" not in text

    lake = Lake(lake_root, Storage(StorageOptions.from_config(None)))
    before, settings_before = versions(lake), model_settings(lake)
    rerun = framelake_run(str(config_path))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert versions(lake) == before
    assert "models_rewritten=0" in rerun.stdout

    # One model's filters change: its rows are counted again, the other model's stay as they are.
    changed, unchanged = raw["models"][1]["name"], raw["models"][0]["name"]
    raw["models"][1] = {**raw["models"][1], "filters": {"refusals": "flag"}}
    config_path.write_text(yaml.safe_dump({**raw, "lake": lake_root}))
    third = framelake_run(str(config_path))
    assert third.returncode == 0, third.stdout + third.stderr
    assert lake.info("token_lengths").version > before["token_lengths"]
    settings_after = model_settings(lake)
    assert settings_after[unchanged] == settings_before[unchanged]
    assert len(settings_after[changed]) == 1 and settings_after[changed] != settings_before[changed]

    # A lake from before layouts were recorded (tables, no layout file) is refused.
    os.remove(os.path.join(lake_root, LAYOUT_FILE))
    refused = framelake_run(str(config_path))
    assert refused.returncode == EXIT_USAGE, refused.stdout + refused.stderr
    assert f"the lake {lake_root} was made under layout 1" in refused.stderr
    assert "Run into a new lake" in refused.stderr and f"delete {lake_root}/tables" in refused.stderr
