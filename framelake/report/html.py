"""The report page: one self-contained HTML document, one function per section."""
from __future__ import annotations

import base64
import html

from framelake.progress import format_rate
from framelake.report.data import Reason, ReportData

REASONS_SHOWN = 12

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
    return (
        _head(data)
        + _section("summary", "Summary", _summary(data))
        + _section("sources", "Sources", _sources(data))
        + _section("videos", "Videos", _videos(data))
        + _section("tokens", "Token lengths", _tokens(data))
        + _section("stages", "Stages", _stages(data))
        + _section("shards", "Shards", _shards(data))
        + _section("tables", "Tables", _tables(data))
        + "</body></html>\n"
    )


def _head(data: ReportData) -> str:
    run = data.run or {}
    when = (f"started {_e(run['started_at'])}, finished {_e(run['finished_at'])}"
            if run else "no run record")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>framelake report {_e(data.run_id)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>framelake report</h1><div class=\"meta\">run <code>{_e(data.run_id)}</code> · {when} · "
        f"lake <code>{_e(data.lake_root)}</code></div>"
    )


def _summary(data: ReportData) -> str:
    tiles = [
        ("records in", sum(s.records_in for s in data.sources)), ("samples kept", sum(s.kept for s in data.sources)),
        ("rejected", sum(s.rejected for s in data.sources)), ("videos ok", data.videos_ok),
        ("videos failed", data.videos_failed),
        ("frames", next((t.rows for t in data.tables if t.name == "frames"), 0)),
        ("shards", len(data.shards)),
    ]
    if data.stages:
        tiles.append(("run time", f"{sum(s.elapsed_s for s in data.stages):.1f}s"))
    return '<div class="tiles">' + "".join(
        f'<div class="tile"><b>{_n(v)}</b><span>{_e(k)}</span></div>' for k, v in tiles) + "</div>"


def _sources(data: ReportData) -> str:
    return (
        _table("sources-table", ["source", "in", "kept", "rejected", "failed videos"],
               [[s.source, s.records_in, s.kept, s.rejected, s.failed_videos] for s in data.sources], {1, 2, 3, 4})
        + _img(data.charts, "sources.png", "records per source")
        + "<h3>Reasons</h3>" + _reasons(data.reasons, ("rejected", "failed video"), "source-reasons-table", "source")
    )


def _videos(data: ReportData) -> str:
    return (
        f"<p>{data.videos_ok:,} media ok, {data.videos_failed:,} failed; {data.frames_per_video.size:,} videos "
        f"(stills are not counted in the histograms).</p>"
        '<div class="charts">'
        + _img(data.charts, "frames_per_video.png", "frames per video")
        + _img(data.charts, "durations.png", "video durations")
        + "</div>"
    )


def _tokens(data: ReportData) -> str:
    token_rows = [
        [m.model, m.max_tokens if m.max_tokens is not None else "-", sum(m.outcomes.values()),
         m.outcomes["fit"], m.outcomes["trimmed"], m.outcomes["dropped"]]
        for m in data.models
    ]
    return (
        "<p>Per model: samples that <span class=fit>fit</span> as they are, that fit after "
        "<span class=trimmed>trimming</span> frames by subsampling, and that were "
        "<span class=dropped>dropped</span> (with the reason).</p>"
        + _table("tokens-table", ["model", "max_tokens", "samples", "fit", "trimmed", "dropped"],
                 token_rows, {1, 2, 3, 4, 5})
        + '<div class="charts">'
        + "".join(_img(data.charts, f"tokens_{m.model}.png", f"token lengths of {m.model}") for m in data.models)
        + "</div><h3>Drop reasons</h3>"
        + _reasons(data.reasons, ("dropped",), "drop-reasons-table", "model")
    )


def _stages(data: ReportData) -> str:
    if not data.stages:
        return ('<p class="none">No run record in this lake: stage timings are recorded by '
                "<code>framelake run</code> and <code>spark-submit jobs/pipeline.py</code>.</p>")
    stage_rows = [
        [s.stage, f"{s.elapsed_s:.1f}s",
         f"{s.items['done']:,}/{s.items['total']:,} {s.items['unit']}" if s.items and s.items.get("total") is not None
         else "-",
         ", ".join(f"{format_rate(rate)} {unit}/s" for rate, unit in s.rates) or "-", s.summary]
        for s in data.stages
    ]
    return (_table("stages-table", ["stage", "time", "items", "throughput", "counts"], stage_rows)
            + _img(data.charts, "stages.png", "stage timings"))


def _shards(data: ReportData) -> str:
    if not data.shards:
        return '<p class="none">no shards</p>'
    groups: dict[tuple[str, str], list[dict]] = {}
    for shard in data.shards:
        groups.setdefault((shard["model"], shard["format"]), []).append(shard)
    return (
        _table("shard-groups-table", ["model", "format", "shards", "samples", "bytes"],
               [[m, f, len(g), sum(s["samples"] for s in g), _size(sum(s["bytes"] for s in g))]
                for (m, f), g in groups.items()], {2, 3})
        + _table("shards-table", ["shard", "samples", "bytes", "size", "token sum"],
                 [[_relative(s["shard_path"], data.lake_root), s["samples"], s["bytes"], _size(s["bytes"]),
                   s["token_sum"]] for s in data.shards], {1, 2, 4})
    )


def _tables(data: ReportData) -> str:
    return _table(
        "tables-table", ["table", "rows", "version", "files", "size"],
        [[t.name, t.rows, "-" if t.version is None else t.version, t.files, _size(t.bytes)] for t in data.tables],
        {1, 2, 3},
    )


def _relative(uri: str, root: str) -> str:
    return uri[len(root) + 1:] if uri.startswith(root + "/") else uri
