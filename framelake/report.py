"""The run report: one self-contained HTML page plus PNG charts under ``<lake>/reports/<run_id>/``.

Counts come from the tables themselves, read on the driver through the lake (delta-rs, no
Spark), so ``framelake report`` also works on a lake whose run is long over. Stage timings come
from the run record the pipeline writes to ``<lake>/runs/<run_id>.json``. The charts are
embedded in the page (base64) and also written beside it as PNG files.
"""
from __future__ import annotations

import base64
import html
import io
import json
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from framelake.config import Config
from framelake.lake import Lake, TableInfo
from framelake.progress import format_rate
from udfs.schemas import TABLES

OUTCOMES = ("fit", "trimmed", "dropped")
OUTCOME_COLORS = {"fit": "#2e7d32", "trimmed": "#f9a825", "dropped": "#c62828"}
# Beyond each stage's own items (progress), the counts that make a throughput worth showing.
COUNTED_RATES = {"normalize": ("samples", "samples"), "frames": ("frames", "frames"), "shards": ("samples", "samples")}
REASONS_SHOWN = 12


# -- run records -----------------------------------------------------------------------------
def new_run_id() -> str:
    """Sortable by start time, unique across concurrent runs."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def save_run(lake: Lake, record: dict) -> str:
    uri = lake.uri("runs", f"{record['run_id']}.json")
    lake.storage.write_bytes(uri, json.dumps(record, indent=1, default=str).encode("utf-8"))
    return uri


def load_run(lake: Lake, run_id: str | None = None) -> dict | None:
    """The record of ``run_id``, or of the latest run; None if no run was recorded."""
    if run_id is None:
        records = [uri for uri in lake.storage.list(lake.uri("runs")) if uri.endswith(".json")]
        if not records:
            return None
        uri = max(records)
    else:
        uri = lake.uri("runs", f"{run_id}.json")
        if not lake.storage.exists(uri):  # the same error for a local lake and S3
            raise FileNotFoundError(uri)
    return json.loads(lake.storage.read_bytes(uri))


# -- what the report shows -------------------------------------------------------------------
@dataclass
class SourceCounts:
    source: str
    records_in: int
    kept: int
    rejected: int
    failed_videos: int


@dataclass
class Reason:
    group: str  # a source or a model
    kind: str  # "rejected", "failed video" or "dropped"
    reason: str
    count: int


@dataclass
class ModelTokens:
    model: str
    max_tokens: int | None
    outcomes: dict[str, int]
    total_tokens: dict[str, np.ndarray]  # per outcome; samples without a count are left out


@dataclass
class StageTiming:
    stage: str
    elapsed_s: float
    items: dict | None
    rates: list[tuple[float, str]]
    summary: str


@dataclass
class ReportData:
    run_id: str
    run: dict | None
    lake_root: str
    tables: list[TableInfo]
    sources: list[SourceCounts]
    reasons: list[Reason]
    videos_ok: int
    videos_failed: int
    frames_per_video: np.ndarray
    durations_s: np.ndarray
    models: list[ModelTokens]
    stages: list[StageTiming]
    shards: list[dict]
    charts: dict[str, bytes] = field(default_factory=dict)


def reason_key(reasons: pa.Array) -> pa.Array:
    """Reasons grouped by their wording: numbers (sizes, offsets, indexes) become N; digits
    inside names (``image_base64_str``) stay."""
    return pc.replace_substring_regex(pc.utf8_slice_codeunits(reasons, 0, 200), r"\b\d+(?:\.\d+)?\b", "N")


def _counts(table: pa.Table, keys: list[str]) -> list[dict]:
    if table.num_rows == 0:
        return []
    return table.group_by(keys).aggregate([([], "count_all")]).to_pylist()


def source_counts(lake: Lake) -> tuple[list[SourceCounts], list[Reason]]:
    """Per source: records in, kept, rejected and the failed media its samples use, with reasons."""
    samples = lake.read_arrow("samples", ["source", "media"])
    rejects = lake.read_arrow("rejects", ["source", "reason"])
    videos = lake.read_arrow("videos", ["video_id", "status", "error"])
    kept = {r["source"]: r["count_all"] for r in _counts(samples, ["source"])}
    rejected = {r["source"]: r["count_all"] for r in _counts(rejects, ["source"])}

    media_ids = pc.struct_field(pc.list_flatten(samples["media"]), "media_id")
    used = pa.table({"source": pc.take(samples["source"], pc.list_parent_indices(samples["media"])),
                     "video_id": media_ids}).group_by(["source", "video_id"]).aggregate([])
    failed = videos.filter(pc.equal(videos["status"], "failed"))
    failed = pa.table({"video_id": failed["video_id"],
                       "reason": reason_key(pc.coalesce(failed["error"], pa.scalar("no error recorded")))})
    failed_used = used.join(failed, "video_id", join_type="inner")
    failed_per_source = {r["source"]: r["count_all"] for r in _counts(failed_used, ["source"])}

    sources = sorted(set(kept) | set(rejected))
    counts = [
        SourceCounts(s, kept.get(s, 0) + rejected.get(s, 0), kept.get(s, 0), rejected.get(s, 0),
                     failed_per_source.get(s, 0))
        for s in sources
    ]
    grouped_rejects = pa.table({"source": rejects["source"], "reason": reason_key(rejects["reason"])})
    reasons = [Reason(r["source"], "rejected", r["reason"], r["count_all"])
               for r in _counts(grouped_rejects, ["source", "reason"])]
    reasons += [Reason(r["source"], "failed video", r["reason"], r["count_all"])
                for r in _counts(failed_used.select(["source", "reason"]), ["source", "reason"])]
    return counts, sorted(reasons, key=lambda r: (r.group, r.kind, -r.count, r.reason))


def token_outcomes(lengths: pa.Table) -> pa.Array:
    """Per (sample, model) row: "fit" as is, "trimmed" (fits after frame subsampling) or "dropped".

    Rows written before ``kept``/``trimmed`` were filled in count ``fits`` as kept, untrimmed."""
    kept = pc.coalesce(lengths["kept"], lengths["fits"], pa.scalar(False))
    trimmed = pc.coalesce(lengths["trimmed"], pa.scalar(False))
    return pc.if_else(kept, pc.if_else(trimmed, "trimmed", "fit"), "dropped")


def model_tokens(lake: Lake, config: Config) -> tuple[list[ModelTokens], list[Reason]]:
    lengths = lake.read_arrow("token_lengths", ["model", "total_tokens", "fits", "kept", "trimmed", "reason"])
    outcome = token_outcomes(lengths)
    max_tokens = {p.name: p.max_tokens for p in config.model_profiles()}
    models, reasons = [], []
    for model in sorted(set(lengths["model"].to_pylist())):
        mine = pc.equal(lengths["model"], model)
        totals = {
            o: lengths["total_tokens"].filter(pc.and_(mine, pc.equal(outcome, o))).drop_null().to_numpy()
            for o in OUTCOMES
        }
        counts = {o: int(pc.sum(pc.and_(mine, pc.equal(outcome, o))).as_py() or 0) for o in OUTCOMES}
        models.append(ModelTokens(model, max_tokens.get(model), counts, totals))
        dropped = lengths.filter(pc.and_(mine, pc.equal(outcome, "dropped")))
        grouped = pa.table({"reason": reason_key(pc.coalesce(dropped["reason"], pa.scalar("no reason recorded")))})
        reasons += [Reason(model, "dropped", r["reason"], r["count_all"]) for r in _counts(grouped, ["reason"])]
    return models, sorted(reasons, key=lambda r: (r.group, -r.count, r.reason))


def stage_timings(run: dict | None) -> list[StageTiming]:
    timings = []
    for stage in (run or {}).get("stages", []):
        elapsed = stage["elapsed_s"]
        items = stage.get("items")
        rates = []
        if items and items.get("done") and elapsed > 0:
            rates.append((items["done"] / elapsed, items["unit"]))
        counted = COUNTED_RATES.get(stage["stage"])
        if counted and isinstance(stage["counts"].get(counted[0]), int) and elapsed > 0:
            rates.append((stage["counts"][counted[0]] / elapsed, counted[1]))
        summary = " ".join(f"{k}={v}" for k, v in stage["counts"].items())
        timings.append(StageTiming(stage["stage"], elapsed, items, rates, summary))
    return timings


def collect(config: Config, lake: Lake, run: dict | None) -> ReportData:
    """Everything the report shows, from the tables and the run record."""
    sources, source_reasons = source_counts(lake)
    models, model_reasons = model_tokens(lake, config)
    videos = lake.read_arrow("videos", ["kind", "status", "n_frames", "duration_s"])
    ok = pc.equal(videos["status"], "ok")
    moving = videos.filter(pc.and_(ok, pc.not_equal(videos["kind"], "image")))
    shards = sorted(lake.read_arrow("shards").to_pylist(), key=lambda s: (s["model"], s["format"], s["shard_path"]))
    return ReportData(
        run_id=run["run_id"] if run else new_run_id(),
        run=run,
        lake_root=lake.root,
        tables=[lake.info(name) for name in TABLES],
        sources=sources,
        reasons=source_reasons + model_reasons,
        videos_ok=int(pc.sum(ok).as_py() or 0),
        videos_failed=int(pc.sum(pc.equal(videos["status"], "failed")).as_py() or 0),
        frames_per_video=moving["n_frames"].drop_null().to_numpy(),
        durations_s=moving["duration_s"].drop_null().to_numpy(),
        models=models,
        stages=stage_timings(run),
        shards=shards,
    )


# -- charts ----------------------------------------------------------------------------------
def _figure(height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7.5, height), dpi=100)
    ax.spines[["top", "right"]].set_visible(False)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return fig, ax


def _png(fig) -> bytes:
    from matplotlib import pyplot as plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def sources_chart(sources: list[SourceCounts]) -> bytes:
    fig, ax = _figure(max(2.0, 0.45 * len(sources) + 1.2))
    names = [s.source for s in sources]
    kept = [s.kept for s in sources]
    ax.barh(names, kept, color=OUTCOME_COLORS["fit"], label="kept")
    ax.barh(names, [s.rejected for s in sources], left=kept, color=OUTCOME_COLORS["dropped"], label="rejected")
    ax.invert_yaxis()
    ax.set_xlabel("records")
    ax.legend(loc="lower right", frameon=False)
    return _png(fig)


def histogram_chart(values: np.ndarray, xlabel: str, color: str) -> bytes:
    fig, ax = _figure()
    if np.issubdtype(values.dtype, np.integer) and values.max() - values.min() <= 60:
        bins = np.arange(values.min() - 0.5, values.max() + 1.5)  # one bar per count
    else:
        bins = min(40, max(5, len(np.unique(values))))
    ax.hist(values, bins=bins, color=color, edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("videos")
    return _png(fig)


def tokens_chart(model: ModelTokens) -> bytes:
    fig, ax = _figure()
    present = [o for o in OUTCOMES if model.total_tokens[o].size]
    everything = np.concatenate([model.total_tokens[o] for o in present])
    upper = max(everything.max(), model.max_tokens or 0) * 1.05
    # The axis runs to max_tokens; bins stay narrow enough to show the shape of the lengths.
    width = max(1.0, min(upper / 40, (everything.max() - everything.min()) / 20 or upper / 40))
    bins = np.linspace(0, upper, min(200, int(np.ceil(upper / width))) + 1)
    ax.hist([model.total_tokens[o] for o in present], bins=bins, stacked=True,
            color=[OUTCOME_COLORS[o] for o in present],
            label=[f"{o} ({model.outcomes[o]:,})" for o in present])
    if model.max_tokens:
        ax.axvline(model.max_tokens, color="black", linestyle="--", linewidth=1.2)
        ax.annotate(f"max_tokens {model.max_tokens:,}", (model.max_tokens, 1), xycoords=("data", "axes fraction"),
                    xytext=(-4, -4), textcoords="offset points", ha="right", va="top", fontsize=9)
    ax.set_xlabel(f"total tokens ({model.model})")
    ax.set_ylabel("samples")
    ax.legend(loc="upper center", frameon=False)
    return _png(fig)


def stages_chart(stages: list[StageTiming]) -> bytes:
    fig, ax = _figure(max(2.0, 0.45 * len(stages) + 1.2))
    ax.barh([s.stage for s in stages], [s.elapsed_s for s in stages], color="#1565c0")
    for i, stage in enumerate(stages):
        ax.annotate(f"{stage.elapsed_s:.1f}s", (stage.elapsed_s, i), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    return _png(fig)


def draw_charts(data: ReportData) -> dict[str, bytes]:
    """PNG bytes by file name; a chart without data is left out."""
    charts = {}
    if data.sources:
        charts["sources.png"] = sources_chart(data.sources)
    if data.frames_per_video.size:
        charts["frames_per_video.png"] = histogram_chart(data.frames_per_video, "frames per video", "#1565c0")
    if data.durations_s.size:
        charts["durations.png"] = histogram_chart(data.durations_s, "video duration (s)", "#6a1b9a")
    for model in data.models:
        if any(model.total_tokens[o].size for o in OUTCOMES):
            charts[f"tokens_{model.model}.png"] = tokens_chart(model)
    if data.stages:
        charts["stages.png"] = stages_chart(data.stages)
    return charts


# -- the page --------------------------------------------------------------------------------
_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b;
       max-width: 1080px; margin: 0 auto; padding: 24px; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 0 0 10px; }
.meta { color: #555; margin-bottom: 18px; }
section { background: #fff; border: 1px solid #e0e0e0; border-radius: 6px; padding: 16px 20px; margin: 16px 0; }
.tiles { display: flex; flex-wrap: wrap; gap: 12px; }
.tile { border: 1px solid #e0e0e0; border-radius: 6px; padding: 8px 14px; min-width: 110px; }
.tile b { display: block; font-size: 20px; } .tile span { color: #555; font-size: 12px; }
table { border-collapse: collapse; margin: 8px 0 12px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 6px 0; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } .charts img { width: calc(50% - 6px); }
.fit { color: #2e7d32; } .trimmed { color: #a67c00; } .dropped { color: #c62828; }
.none { color: #777; font-style: italic; }
code { font-size: 12px; }
"""


def _e(value) -> str:
    return html.escape(str(value))


def _n(value) -> str:
    return f"{value:,}" if isinstance(value, int) else _e(value)


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"


def _table(table_id: str, header: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    head = "".join(f'<th class="n">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{_n(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
                         for i, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _img(charts: dict[str, bytes], name: str, alt: str) -> str:
    if name not in charts:
        return f'<p class="none">no data for {_e(alt)}</p>'
    data = base64.b64encode(charts[name]).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_e(alt)}" data-file="{_e(name)}">'


def _section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{_e(title)}</h2>{body}</section>'


def _reasons(reasons: list[Reason], kinds: tuple[str, ...], table_id: str, group_label: str) -> str:
    shown, hidden = [], 0
    for group in sorted({r.group for r in reasons if r.kind in kinds}):
        mine = [r for r in reasons if r.group == group and r.kind in kinds]
        shown += mine[:REASONS_SHOWN]
        hidden += len(mine[REASONS_SHOWN:])
    if not shown:
        return '<p class="none">none</p>'
    more = f'<p class="none">{hidden:,} more reasons not shown</p>' if hidden else ""
    rows = [[r.group, r.kind, r.reason, r.count] for r in shown]
    return _table(table_id, [group_label, "kind", "reason", "count"], rows, {3}) + more


def render(data: ReportData) -> str:
    charts = data.charts
    run = data.run or {}
    samples = sum(s.kept for s in data.sources)
    tiles = [
        ("records in", sum(s.records_in for s in data.sources)), ("samples kept", samples),
        ("rejected", sum(s.rejected for s in data.sources)), ("videos ok", data.videos_ok),
        ("videos failed", data.videos_failed),
        ("frames", next((t.rows for t in data.tables if t.name == "frames"), 0)),
        ("shards", len(data.shards)),
    ]
    if data.stages:
        tiles.append(("run time", f"{sum(s.elapsed_s for s in data.stages):.1f}s"))
    tiles_html = '<div class="tiles">' + "".join(
        f'<div class="tile"><b>{_n(v)}</b><span>{_e(k)}</span></div>' for k, v in tiles) + "</div>"

    sources_html = (
        _table("sources-table", ["source", "in", "kept", "rejected", "failed videos"],
               [[s.source, s.records_in, s.kept, s.rejected, s.failed_videos] for s in data.sources], {1, 2, 3, 4})
        + _img(charts, "sources.png", "records per source")
        + "<h3>Reasons</h3>" + _reasons(data.reasons, ("rejected", "failed video"), "source-reasons-table", "source")
    )

    moving = data.frames_per_video.size
    videos_html = (
        f"<p>{data.videos_ok:,} media ok, {data.videos_failed:,} failed; {moving:,} videos "
        f"(stills are not counted in the histograms).</p>"
        '<div class="charts">'
        + _img(charts, "frames_per_video.png", "frames per video")
        + _img(charts, "durations.png", "video durations")
        + "</div>"
    )

    token_rows = [
        [m.model, m.max_tokens if m.max_tokens is not None else "-", sum(m.outcomes.values()),
         m.outcomes["fit"], m.outcomes["trimmed"], m.outcomes["dropped"]]
        for m in data.models
    ]
    tokens_html = (
        "<p>Per model: samples that <span class=fit>fit</span> as they are, that fit after "
        "<span class=trimmed>trimming</span> frames by subsampling, and that were "
        "<span class=dropped>dropped</span> (with the reason).</p>"
        + _table("tokens-table", ["model", "max_tokens", "samples", "fit", "trimmed", "dropped"],
                 token_rows, {1, 2, 3, 4, 5})
        + '<div class="charts">'
        + "".join(_img(charts, f"tokens_{m.model}.png", f"token lengths of {m.model}") for m in data.models)
        + "</div><h3>Drop reasons</h3>"
        + _reasons(data.reasons, ("dropped",), "drop-reasons-table", "model")
    )

    if data.stages:
        stage_rows = [
            [s.stage, f"{s.elapsed_s:.1f}s",
             f"{s.items['done']:,}/{s.items['total']:,} {s.items['unit']}" if s.items and s.items.get("total") is not None
             else "-",
             ", ".join(f"{format_rate(rate)} {unit}/s" for rate, unit in s.rates) or "-", s.summary]
            for s in data.stages
        ]
        stages_html = (_table("stages-table", ["stage", "time", "items", "throughput", "counts"], stage_rows)
                       + _img(charts, "stages.png", "stage timings"))
    else:
        stages_html = ('<p class="none">No run record in this lake: stage timings are recorded by '
                       "<code>framelake run</code> and <code>spark-submit jobs/pipeline.py</code>.</p>")

    groups: dict[tuple[str, str], list[dict]] = {}
    for shard in data.shards:
        groups.setdefault((shard["model"], shard["format"]), []).append(shard)
    shards_html = (
        _table("shard-groups-table", ["model", "format", "shards", "samples", "bytes"],
               [[m, f, len(g), sum(s["samples"] for s in g), _size(sum(s["bytes"] for s in g))]
                for (m, f), g in groups.items()], {2, 3})
        + _table("shards-table", ["shard", "samples", "bytes", "size", "token sum"],
                 [[_relative(s["shard_path"], data.lake_root), s["samples"], s["bytes"], _size(s["bytes"]),
                   s["token_sum"]] for s in data.shards], {1, 2, 4})
    ) if data.shards else '<p class="none">no shards</p>'

    tables_html = _table(
        "tables-table", ["table", "rows", "version", "files", "size"],
        [[t.name, t.rows, "-" if t.version is None else t.version, t.files, _size(t.bytes)] for t in data.tables],
        {1, 2, 3},
    )

    when = (f"started {_e(run['started_at'])}, finished {_e(run['finished_at'])}"
            if run else "no run record")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>framelake report {_e(data.run_id)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>framelake report</h1><div class=\"meta\">run <code>{_e(data.run_id)}</code> · {when} · "
        f"lake <code>{_e(data.lake_root)}</code></div>"
        + _section("summary", "Summary", tiles_html)
        + _section("sources", "Sources", sources_html)
        + _section("videos", "Videos", videos_html)
        + _section("tokens", "Token lengths", tokens_html)
        + _section("stages", "Stages", stages_html)
        + _section("shards", "Shards", shards_html)
        + _section("tables", "Tables", tables_html)
        + "</body></html>\n"
    )


def _relative(uri: str, root: str) -> str:
    return uri[len(root) + 1:] if uri.startswith(root + "/") else uri


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
