"""Generate-stage tests: the conf recipes made small (few short requests), configs pointing at
the test LLM server, and the rows a generate run leaves, to compare two runs."""
from __future__ import annotations

import yaml

from framelake.lake import Lake
from tests.support.llm_server import MODEL_NAME
from tests.support.paths import REPO

RECIPES = REPO / "conf" / "recipes"
# Columns that differ between two runs making the same replies: their timing and retries.
VARYING = {"generations": {"attempts", "elapsed_s"}}


def conf_recipe(name: str, **changes) -> dict:
    """``conf/recipes/<name>.yaml`` with ``changes`` of its keys (``sampling`` merged)."""
    raw = yaml.safe_load((RECIPES / f"{name}.yaml").read_text())
    sampling = {**raw.get("sampling", {}), **changes.pop("sampling", {})}
    return {**raw, **changes, "sampling": sampling}


def small_dc(**changes) -> dict:
    """The MIMIC-IT dense-caption recipe asking for 2 pairs in at most 120 tokens."""
    return conf_recipe("mimicit_dc", pairs=2, **{"sampling": {"max_tokens": 120}, **changes})


def generate_section(server_url: str, recipes: list, **changes) -> dict:
    """``generate:`` on the server at ``server_url`` (its ``/v1``), retries quick."""
    limits = {"tasks": 2, "concurrency": 2, **changes.pop("limits", {})}
    return {"endpoint": {"base_url": f"{server_url}/v1", "model": MODEL_NAME, "timeout_s": 60, "backoff_s": 0.2,
                         "max_backoff_s": 2.0, **changes.pop("endpoint", {})},
            "limits": limits, "wave_size": changes.pop("wave_size", 2), "recipes": recipes, **changes}


def generated(lake: Lake) -> dict[str, list]:
    """Per table, the rows the generate stage wrote, sorted, without the varying columns."""
    def rows(name: str, keep) -> list:
        table = lake.read_arrow(name)
        table = table.drop_columns(sorted(VARYING.get(name, set()) & set(table.column_names)))
        return sorted((row for row in table.to_pylist() if keep(row)), key=repr)

    made = lambda row: (row.get("format") or "").startswith("generate:")  # noqa: E731
    return {"samples": rows("samples", made), "rejects": rows("rejects", made),
            "lineage": rows("lineage", lambda row: True), "generations": rows("generations", lambda row: True)}
