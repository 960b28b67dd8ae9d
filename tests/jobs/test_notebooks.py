"""The Databricks notebooks in ``notebooks/`` run top to bottom outside Databricks: cell by
cell as Jupyter runs jupytext's reading of them, and as plain Python scripts.

Both run on the session fixture's Spark, which the notebooks pick up as the active session
(as they pick up Databricks' own), with the lake in a temp folder (``FRAMELAKE_LAKE``).
"""
from __future__ import annotations

import runpy
import subprocess
import sys

import jupytext
import matplotlib.pyplot as plt
import pytest
import yaml

from framelake.lake import Lake
from framelake.lock import LakeLockedError
from framelake.storage import Storage
from tests.support.paths import REPO
from tests.support.tables import assert_same_tables
from udfs.schemas import TABLES

NOTEBOOKS = REPO / "notebooks"
DENSE_CAPTIONS = REPO / "demo" / "annotations" / "generate" / "dense_captions.jsonl"
STAGE_NOTEBOOKS = ("01_normalize.py", "02_frames.py", "03_tokens.py", "04_shards.py")
CELL_SEPARATOR = "\n# COMMAND ----------\n"
# Another run holding a lake's run lock until it is killed.
HOLD_LOCK = """
import sys, time
from framelake.lock import lake_lock
from framelake.storage import Storage

with lake_lock(Storage(), sys.argv[1], run_id="other-run"):
    print("held", flush=True)
    time.sleep(600)
"""


def test_notebooks_are_databricks_source_files():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.py")) == ["00_pipeline.py", *STAGE_NOTEBOOKS, "05_generate.py"]
    for path in NOTEBOOKS.glob("*.py"):
        header, *cells = path.read_text().split("\n", 1)[1].split(CELL_SEPARATOR)
        assert path.read_text().startswith("# Databricks notebook source\n"), path.name
        assert header.startswith("# MAGIC %md\n# MAGIC # framelake"), path.name  # opens with its title
        for cell in cells:
            lines = cell.strip().splitlines()
            if lines[0].startswith("# MAGIC"):
                assert lines[0] == "# MAGIC %md" and all(line.startswith("# MAGIC") for line in lines), path.name
            else:
                compile(cell, str(path), "exec")


def run_like_jupyter(path) -> dict:
    """Each code cell of jupytext's reading of the file, in order, in one namespace."""
    namespace = {"__name__": "__main__"}
    for cell in jupytext.read(path).cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, str(path), "exec"), namespace)
    return namespace


def test_stage_notebooks_build_the_lake_in_jupyter(demo_run, spark, tmp_path, monkeypatch):
    demo_ctx, _ = demo_run
    monkeypatch.setenv("FRAMELAKE_LAKE", str(tmp_path / "lake"))
    monkeypatch.chdir(NOTEBOOKS)  # where Jupyter starts a notebook's kernel
    for name in STAGE_NOTEBOOKS:
        namespace = run_like_jupyter(NOTEBOOKS / name)
        assert namespace["ctx"].spark.sparkContext.applicationId == spark.sparkContext.applicationId, name
    assert_same_tables(Lake(str(tmp_path / "lake"), Storage()), demo_ctx)


def test_pipeline_notebook_runs_as_a_script_and_plots_token_lengths(demo_run, spark, tmp_path, monkeypatch, capsys):
    demo_ctx, _ = demo_run
    lake = str(tmp_path / "lake")
    monkeypatch.setenv("FRAMELAKE_LAKE", lake)
    namespace = runpy.run_path(str(NOTEBOOKS / "00_pipeline.py"), run_name="__main__")
    shown = capsys.readouterr().out
    assert_same_tables(Lake(lake, Storage()), demo_ctx)
    for name in TABLES:
        assert f"{name}: {lake}/tables/{name}" in shown
    axes = namespace["figure"].axes[0]
    models = [profile.name for profile in demo_ctx.config.models]
    assert sorted(text.get_text() for text in axes.get_legend().get_texts()) == sorted(models)
    counted = namespace["ctx"].lake.read_arrow("token_lengths", ["total_tokens"]).column("total_tokens").drop_null()
    assert sum(bar.get_height() for bar in axes.patches) == len(counted) > 0
    plt.close(namespace["figure"])


def test_stage_notebooks_take_the_lake_lock_as_the_cli_does(spark, tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lake)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("FRAMELAKE_LAKE", str(lake))
        monkeypatch.chdir(NOTEBOOKS)
        with pytest.raises(LakeLockedError, match="in use by run other-run"):
            run_like_jupyter(NOTEBOOKS / "01_normalize.py")
        assert not (lake / "tables").exists()  # refused before anything was written
    finally:
        holder.kill()
        holder.wait()


def test_the_generate_notebook_previews_and_runs_a_recipe(spark, llm_server, tmp_path, monkeypatch, capsys):
    from tests.conftest import LLM_API_KEY
    from tests.support.config import write_config
    from tests.support.generate import generate_section

    (tmp_path / "queries.jsonl").write_text("".join(DENSE_CAPTIONS.read_text().splitlines(True)[:2]))
    recipe = tmp_path / "dc.yaml"
    raw = yaml.safe_load((REPO / "conf" / "recipes" / "mimicit_dc.yaml").read_text())
    raw["queries"].update(path=str(tmp_path / "queries.jsonl"), media_root=str(REPO / "demo" / "media"))
    recipe.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("FRAMELAKE_CONFIG", write_config(tmp_path, generate=generate_section(llm_server.url, [])))
    monkeypatch.setenv("FRAMELAKE_LAKE", str(tmp_path / "lake"))
    monkeypatch.setenv("FRAMELAKE_RECIPES", str(recipe))
    monkeypatch.setenv("FRAMELAKE_PREVIEW", "1")
    monkeypatch.setenv("OPENAI_API_KEY", LLM_API_KEY)
    monkeypatch.chdir(NOTEBOOKS)
    namespace = run_like_jupyter(NOTEBOOKS / "05_generate.py")
    shown = capsys.readouterr().out
    assert "--- raw reply" in shown and "'requests': 2" in shown  # previewed, then counted
    counts = namespace["result"].details["recipes"]["mimicit_dc"]
    assert counts["queries"] == 2 == counts["samples"] + counts["rejects"] and counts["sent"] == 2
    lake = Lake(str(tmp_path / "lake"), Storage())
    assert lake.info("generations").rows == 2 and lake.info("lineage").rows == counts["samples"]
