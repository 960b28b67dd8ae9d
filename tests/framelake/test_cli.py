"""The command line and spark-submit, as a user runs them (real subprocesses)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from deltalake import DeltaTable

from framelake.config import ConfigError, load_config
from tests.support.config import write_config
from tests.support.paths import REPO

BIN = os.path.dirname(sys.executable)


def framelake(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(BIN, "framelake"), *args], capture_output=True, text=True, cwd=REPO)


def test_validate_accepts_the_embedded_default():
    result = framelake("validate", "--config", "conf/local.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "config is valid" in result.stdout
    assert "tokenizer llama3" in result.stdout


def test_validate_reports_every_broken_path(tmp_path):
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    raw["sources"][0]["annotations"] = str(tmp_path / "missing" / "*.json")
    raw["sources"][1]["media_root"] = str(tmp_path / "nowhere")
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = framelake("validate", "--config", str(path))
    assert result.returncode == 1
    assert "FAIL  sources[0] clevrer_qa: annotations: no files match" in result.stdout
    assert "FAIL  sources[1] coco_caption: media_root" in result.stdout


@pytest.mark.parametrize(
    "change, message",
    [
        ({"lake": None}, "lake: required"),
        ({"frames": {"fps": "fast"}}, "frames.fps: must be a float"),
        ({"frames": {"max_frames": 0}}, "frames.max_frames: must be > 0"),
        ({"shards": {"formats": ["parquet"]}}, "shards.formats: unknown format 'parquet'"),
        ({"shards": {"in_context": "keep"}}, "shards.in_context: must be one of drop, turns, got 'keep'"),
        ({"shards": {"llava_system": "system"}}, "shards.llava_system: must be one of prepend, drop, got 'system'"),
        ({"models": [{"name": "m", "profile": "no-such-model"}]}, "models[0].profile"),
        ({"lakes": "x"}, "lakes: unknown key"),
    ],
)
def test_config_errors_name_the_key(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(write_config(tmp_path, **change))


def test_every_config_error_is_reported_at_once(tmp_path):
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    raw["sources"][0]["format"] = "videochat"
    raw["sources"][2]["options"] = {"video_ext": ""}
    raw["frames"].update(fps=-1, max_frame=8)
    raw["models"][1]["profile"] = "no-such-model"
    raw["shards"]["formats"] = ["minicpmv", "parquet"]
    path = tmp_path / "five.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = framelake("validate", "--config", str(path))
    assert result.returncode == 2
    problems = [line.strip() for line in result.stderr.splitlines()[1:]]
    assert result.stderr.splitlines()[0] == f"framelake: config errors ({len(problems)}):"
    assert [problem.split(":")[0] for problem in problems] == [
        "sources[0].format", "sources[2].options.video_ext", "frames.fps", "frames.max_frame", "models[1].profile",
        "shards.formats"]
    assert "unknown format 'parquet'" in problems[-1]


def test_unknown_source_format_is_a_config_error_from_the_cli(tmp_path):
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    raw["sources"][0]["format"] = "videochat"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    result = framelake("run", "--config", str(path))
    assert result.returncode == 2
    assert "sources[0].format: unknown format 'videochat'" in result.stderr


def test_inspect_prints_rows_and_versions(demo_run, tmp_path):
    ctx, _ = demo_run
    result = framelake("inspect", "--config", write_config(tmp_path, lake=ctx.lake.root))
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    for name in ("samples", "frames", "shards"):
        assert int(lines[name][1]) == ctx.lake.info(name).rows
        assert lines[name][2] == str(ctx.lake.info(name).version)


@pytest.mark.spark  # Spark runs in a subprocess
def test_spark_submit_runs_the_pipeline_with_the_same_result(demo_run, tmp_path):
    ctx, _ = demo_run
    lake = tmp_path / "lake"
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    result = subprocess.run(
        [os.path.join(BIN, "spark-submit"), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
         "--driver-java-options", "-Dlog4j2.configurationFile=file:conf/log4j2.properties",  # as the README says
         "jobs/pipeline.py", "--config", write_config(tmp_path, lake=str(lake))],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "No Partition Defined for Window" not in result.stderr and "default log4j profile" not in result.stderr
    assert "[pipeline]" in result.stdout
    for name in ("samples", "rejects", "videos", "frames", "token_lengths", "shards"):
        assert DeltaTable(str(lake / "tables" / name)).to_pyarrow_table().num_rows == ctx.lake.info(name).rows
    submitted = DeltaTable(str(lake / "tables" / "samples")).to_pyarrow_table().column("sample_id").to_pylist()
    assert sorted(submitted) == sorted(ctx.lake.read_arrow("samples", ["sample_id"]).column("sample_id").to_pylist())
