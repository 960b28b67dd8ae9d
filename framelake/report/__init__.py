"""The run report: one self-contained HTML page plus PNG charts under ``<lake>/reports/<run_id>/``.

Counts come from the tables themselves, read on the driver through the lake (delta-rs, no
Spark), so ``framelake report`` also works on a lake whose run is long over. Stage timings come
from the run record the pipeline writes to ``<lake>/runs/<run_id>.json`` (``framelake.runs``).
The charts are embedded in the page (base64) and also written beside it as PNG files.

Modules: ``data`` (what the report shows, collected from the tables), ``charts`` (the PNGs),
``html`` (the page).
"""
from __future__ import annotations

from framelake.config import Config
from framelake.lake import Lake
from framelake.report.charts import draw_charts
from framelake.report.data import collect, token_outcomes
from framelake.report.html import render

__all__ = ["token_outcomes", "write_report"]


def write_report(config: Config, lake: Lake, run: dict | None) -> str:
    """Write the report of ``run`` (None: the tables without stage timings); returns the page's URI."""
    data = collect(config, lake, run)
    data.charts = draw_charts(data)
    folder = lake.uri("reports", data.run_id)
    for name, png in data.charts.items():
        lake.storage.write_bytes(f"{folder}/{name}", png)
    page = f"{folder}/index.html"
    lake.storage.write_bytes(page, render(data).encode("utf-8"))
    return page
