"""What the notebooks in ``notebooks/`` share: their parameters, the run context, and tables
shown the way the notebook's host shows them.

The same notebook file runs on Databricks, in Jupyter (through jupytext) and with plain
``python``. Parameters come from Databricks widgets where ``dbutils`` exists, else from
``FRAMELAKE_<NAME>`` environment variables, else from the defaults.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from framelake.config import load_config
from framelake.runtime import Context
from framelake.storage import is_s3


def on_databricks() -> bool:
    return bool(os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def default_config() -> str:
    """The demo config, or the Databricks example on Databricks."""
    return "conf/databricks.yaml" if on_databricks() else "conf/local.yaml"


def notebook_params(dbutils, defaults: dict[str, str]) -> dict[str, str]:
    """Each parameter from its widget (created with its default) or ``FRAMELAKE_<NAME>``."""
    if dbutils is not None:
        for name, default in defaults.items():
            dbutils.widgets.text(name, default)
        return {name: dbutils.widgets.get(name) for name in defaults}
    return {name: os.environ.get(f"FRAMELAKE_{name.upper()}", default) for name, default in defaults.items()}


@dataclass
class Notebook:
    ctx: Context
    params: dict[str, str]
    display: Callable | None = None  # Databricks' ``display``; elsewhere Spark's text table

    @classmethod
    def start(cls, namespace: dict, **defaults: str) -> "Notebook":
        """Parameters ``config`` (a path or ``s3://`` URI), ``lake`` (overrides the config's;
        empty keeps it) and ``defaults``; a context on the notebook's session or a new one.
        ``namespace`` is the notebook's ``globals()``, where Databricks puts ``dbutils`` and
        ``display``."""
        params = notebook_params(namespace.get("dbutils"), {"config": default_config(), "lake": "", **defaults})
        config_path = params["config"]
        # Jupyter and Databricks start a notebook in its own folder; the example configs'
        # relative paths are taken from the repository root, one level up.
        in_parent = os.path.exists(os.path.join("..", config_path))
        if not is_s3(config_path) and not os.path.exists(config_path) and in_parent:
            os.chdir("..")
        config = load_config(config_path, overrides={"lake": params["lake"]} if params["lake"] else None)
        # Only Databricks' display renders a Spark DataFrame as a table (IPython's shows its repr).
        display = namespace.get("display") if on_databricks() else None
        return cls(ctx=Context.create(config), params=params, display=display)

    def run_stage(self, name: str):
        """One stage, as the CLI and ``spark-submit`` run it: under the lake's run lock, rerun
        after a Delta commit conflict; its summary is printed. Returns its ``StageResult``."""
        from jobs.pipeline import PIPELINE
        from jobs.stage import run_stage

        return run_stage(PIPELINE[name], self.ctx)

    def show(self, df, rows: int = 20) -> None:
        if self.display is not None:
            self.display(df.limit(rows))
        else:
            df.show(rows, truncate=80)
