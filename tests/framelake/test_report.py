"""The run report on the demo lake: its numbers are the tables' numbers (read back with
deltalake), its charts are real pictures, and the page renders in headless Chromium."""
from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pytest
import yaml
from deltalake import DeltaTable
from PIL import Image

from framelake.progress import format_rate
from framelake.report import token_outcomes, write_report
from framelake.runs import load_run, new_run_id, save_run
from jobs.pipeline import run_record
from tests.support.paths import REPO
from tests.support.tables import written_tables
from udfs.schemas import TABLES

BIN = os.path.dirname(sys.executable)
SECTIONS = {"summary": "Summary", "sources": "Sources", "videos": "Videos", "tokens": "Token lengths",
            "stages": "Stages", "shards": "Shards", "tables": "Tables"}


class PageTables(HTMLParser):
    """The cell texts of every ``<table id=...>`` of a page, as one dict per row."""

    def __init__(self, page: str):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table = self._row = self._cell = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs)["id"], [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def rows(self, table_id: str) -> list[dict[str, str]]:
        header, *body = self.tables[table_id]
        return [dict(zip(header, row)) for row in body]


def number(cell: str) -> int:
    return int(cell.replace(",", ""))


def table(ctx, name):
    return DeltaTable(ctx.lake.table_uri(name)).to_pyarrow_table()


@pytest.fixture(scope="module")
def report(demo_run):
    """(ctx, results, run record, page text, report folder) of the demo run's report."""
    ctx, results = demo_run
    record = run_record(ctx, new_run_id(), "2024-01-01T00:00:00Z", results)
    save_run(ctx.lake, record)
    page_uri = write_report(ctx.config, ctx.lake, record)
    with open(page_uri, encoding="utf-8") as f:
        page = f.read()
    return ctx, results, record, page, os.path.dirname(page_uri)


def test_report_is_written_under_the_lake_by_run_id(report):
    ctx, _, record, _, folder = report
    assert folder == ctx.lake.uri("reports", record["run_id"])
    assert load_run(ctx.lake, record["run_id"]) == load_run(ctx.lake) == record


def test_source_counts_equal_the_tables(report):
    ctx, _, _, page, _ = report
    samples = table(ctx, "samples").to_pylist()
    rejects = table(ctx, "rejects").to_pylist()
    failed = {v["video_id"]: v["error"] for v in table(ctx, "videos").to_pylist() if v["status"] == "failed"}
    assert failed, "the demo corpus has a corrupt video"
    kept = Counter(s["source"] for s in samples)
    rejected = Counter(r["source"] for r in rejects)
    failed_used = {(s["source"], m["media_id"]) for s in samples for m in s["media"] if m["media_id"] in failed}
    shown = {row["source"]: row for row in PageTables(page).rows("sources-table")}
    assert set(shown) == set(kept) | set(rejected)
    for source, row in shown.items():
        assert number(row["kept"]) == kept[source]
        assert number(row["rejected"]) == rejected[source]
        assert number(row["in"]) == kept[source] + rejected[source]
        assert number(row["failed videos"]) == sum(1 for s, _ in failed_used if s == source)
    reasons = PageTables(page).rows("source-reasons-table")
    for source, count in rejected.items():
        assert sum(number(r["count"]) for r in reasons if r["source"] == source and r["kind"] == "rejected") == count
    failed_rows = [r for r in reasons if r["kind"] == "failed video"]
    assert sum(number(r["count"]) for r in failed_rows) == len(failed_used)
    assert all(r["reason"] for r in reasons)


def test_token_outcomes_equal_the_tables(report):
    ctx, _, _, page, _ = report
    lengths = table(ctx, "token_lengths").to_pylist()
    shown = {row["model"]: row for row in PageTables(page).rows("tokens-table")}
    profiles = {p.name: p for p in ctx.config.models}
    assert set(shown) == set(profiles)
    drop_reasons = PageTables(page).rows("drop-reasons-table")
    for model, row in shown.items():
        mine = [r for r in lengths if r["model"] == model]
        kept = [r for r in mine if (r["kept"] if r["kept"] is not None else r["fits"])]
        trimmed = [r for r in kept if r["trimmed"]]
        assert number(row["samples"]) == len(mine)
        assert number(row["fit"]) == len(kept) - len(trimmed)
        assert number(row["trimmed"]) == len(trimmed)
        assert number(row["dropped"]) == len(mine) - len(kept)
        assert number(row["max_tokens"]) == profiles[model].max_tokens
        assert sum(number(r["count"]) for r in drop_reasons if r["model"] == model) == len(mine) - len(kept)
    assert any("frames missing" in r["reason"] for r in drop_reasons)  # the corrupt video's samples


def test_token_outcomes_tell_fit_trimmed_and_dropped_apart():
    """The demo trims nothing, so the trimmed case is checked on rows of the table's own types."""
    lengths = pa.table({
        "kept": pa.array([True, True, False, None, None], pa.bool_()),
        "trimmed": pa.array([False, True, False, None, None], pa.bool_()),
        "fits": pa.array([True, True, True, True, False], pa.bool_()),
    })
    assert token_outcomes(lengths).to_pylist() == ["fit", "trimmed", "dropped", "fit", "dropped"]


def test_stage_timings_come_from_the_run_record(report):
    ctx, results, record, page, _ = report
    rows = PageTables(page).rows("stages-table")
    assert [r["stage"] for r in rows] == [r.stage for r in results] == ["normalize", "frames", "tokens", "shards"]
    for row, result in zip(rows, results):
        assert row["time"] == f"{result.elapsed_s:.1f}s"
        assert re.search(r"\d[\d,.]* \w+/s", row["throughput"]), row
    by_stage = {r["stage"]: r for r in rows}
    normalize = next(r for r in results if r.stage == "normalize")
    frames = next(r for r in results if r.stage == "frames")
    assert by_stage["normalize"]["items"] == f"{normalize.counts['units']}/{normalize.counts['units']} units"
    assert by_stage["frames"]["items"] == f"{frames.counts['media']}/{frames.counts['media']} videos"
    assert f"{format_rate(frames.counts['frames'] / frames.elapsed_s)} frames/s" in by_stage["frames"]["throughput"]
    assert f"{format_rate(frames.counts['media'] / frames.elapsed_s)} videos/s" in by_stage["frames"]["throughput"]
    written = written_tables(ctx.lake)
    assert record["table_versions"] == {name: DeltaTable(ctx.lake.table_uri(name)).version() if name in written
                                        else None for name in TABLES}


def test_shard_list_equals_the_shards_table(report):
    ctx, _, _, page, _ = report
    shards = {s["shard_path"]: s for s in table(ctx, "shards").to_pylist()}
    shown = PageTables(page).rows("shards-table")
    assert sorted(ctx.lake.uri(r["shard"]) for r in shown) == sorted(shards)
    for row in shown:
        shard = shards[ctx.lake.uri(row["shard"])]
        assert number(row["samples"]) == shard["samples"]
        assert number(row["bytes"]) == shard["bytes"] == os.path.getsize(shard["shard_path"])
        assert number(row["token sum"]) == shard["token_sum"]
    groups = PageTables(page).rows("shard-groups-table")
    assert sum(number(g["samples"]) for g in groups) == sum(s["samples"] for s in shards.values())


def test_tables_section_equals_delta_row_counts_and_versions(report):
    ctx, _, _, page, _ = report
    shown = {row["table"]: row for row in PageTables(page).rows("tables-table")}
    assert set(shown) == set(TABLES)
    for name in written_tables(ctx.lake):
        dt = DeltaTable(ctx.lake.table_uri(name))
        assert number(shown[name]["rows"]) == dt.to_pyarrow_table().num_rows
        assert number(shown[name]["version"]) == dt.version()


def test_charts_are_real_pictures_embedded_in_the_page(report):
    ctx, _, _, page, folder = report
    names = sorted(f for f in os.listdir(folder) if f.endswith(".png"))
    models = [m.name for m in ctx.config.models]
    assert names == sorted(["sources.png", "frames_per_video.png", "durations.png", "stages.png",
                            *(f"tokens_{m}.png" for m in models)])
    embedded = dict(re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="[^"]*" data-file="([^"]+)"', page))
    embedded = {name: base64.b64decode(data) for data, name in embedded.items()}
    for name in names:
        with open(os.path.join(folder, name), "rb") as f:
            png = f.read()
        assert embedded[name] == png, name
        Image.open(io.BytesIO(png)).verify()
        image = Image.open(io.BytesIO(png)).convert("RGB")
        assert image.width >= 500 and image.height >= 150, name
        pixels = np.asarray(image)
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, f"{name} is nearly blank"
        assert (pixels.min(axis=2) < 128).mean() > 0.005, f"{name} has almost no ink"


def test_report_command_writes_the_latest_run_and_inspect_shows_history(report, tmp_path):
    ctx, _, record, _, _ = report
    raw = yaml.safe_load((REPO / "conf" / "local.yaml").read_text())
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({**raw, "lake": ctx.lake.root}))
    result = subprocess.run([os.path.join(BIN, "framelake"), "report", "--config", str(config)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"report: {ctx.lake.uri('reports', record['run_id'], 'index.html')}"
    result = subprocess.run([os.path.join(BIN, "framelake"), "report", "--config", str(config), "--run", "nope"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "--run: no run 'nope'" in result.stderr

    result = subprocess.run([os.path.join(BIN, "framelake"), "inspect", "--config", str(config)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    history = result.stdout.split("history, newest first")[1]
    for name in written_tables(ctx.lake):
        dt = DeltaTable(ctx.lake.table_uri(name))
        section = history.split(f"\n{name}:\n")[1].split("\n")[0]
        assert section.split()[0] == f"v{dt.version()}"
        assert f"rows +{dt.to_pyarrow_table().num_rows:,} " in section


def test_history_counts_the_rows_each_version_added(demo_run, tmp_path):
    """A second commit to a copy of a table: each version's rows added as Delta itself counts them."""
    from framelake.lake import Lake

    ctx, _ = demo_run
    lake = Lake(str(tmp_path / "lake"), ctx.storage, ctx.spark)
    shutil.copytree(ctx.lake.table_uri("samples"), lake.table_uri("samples"))
    lake.write("samples", lake.read("samples").limit(3), mode="append")
    history = lake.history("samples")
    assert [h.version for h in history] == [1, 0]
    for commit in history:
        rows_then = DeltaTable(lake.table_uri("samples"), version=commit.version).to_pyarrow_table().num_rows
        rows_before = DeltaTable(lake.table_uri("samples"), version=commit.version - 1).to_pyarrow_table().num_rows \
            if commit.version else 0
        assert commit.rows_added == rows_then - rows_before
        assert commit.files_removed == 0
    assert history[0].operation == "WRITE" and history[0].mode == "Append"


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if shutil.which("apt-get") is None:
            pytest.skip("chromium is not installed and apt-get is unavailable to install it "
                        "(`make test` installs Debian's chromium where apt is available)")
        pytest.fail("chromium is not installed: `make test` installs it (apt-get install chromium)")
    return path


def run_chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True, text=True, timeout=180,
    )


def test_page_renders_in_headless_chromium_with_every_section(report, tmp_path):
    ctx, _, _, _, folder = report
    page = f"file://{folder}/index.html"
    dom = run_chromium(tmp_path, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # script errors and failed loads are logged to the console
    for section_id, title in SECTIONS.items():
        assert re.search(rf'<section id="{section_id}"><h2>{title}</h2>', dom.stdout), section_id
    assert dom.stdout.count('<img src="data:image/png;base64,') == len(
        [f for f in os.listdir(folder) if f.endswith(".png")])

    screenshot = tmp_path / "report.png"
    shot = run_chromium(tmp_path, f"--screenshot={screenshot}", "--window-size=1200,3600",
                        "--hide-scrollbars", page)
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-2000:]
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape[:2] == (3600, 1200)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # text and charts, not a blank page
    if os.environ.get("FRAMELAKE_KEEP_SCREENSHOT"):  # for a person to look at the page
        shutil.copy(screenshot, os.environ["FRAMELAKE_KEEP_SCREENSHOT"])
