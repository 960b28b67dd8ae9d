"""What the report shows, collected on the driver from the tables (through the lake) and the
run record."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from framelake.config import Config
from framelake.lake import Lake, TableInfo
from framelake.runs import new_run_id
from udfs.schemas import TABLES

OUTCOMES = ("fit", "trimmed", "dropped")
# Beyond each stage's own items (progress), the counts that make a throughput worth showing.
COUNTED_RATES = {"normalize": ("samples", "samples"), "frames": ("frames", "frames"), "shards": ("samples", "samples")}


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
    max_tokens = {p.name: p.max_tokens for p in config.models}
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
