"""The whole pipeline: normalize → generate → frames → tokens → shards, then a run record under
``<lake>/runs/``, a report under ``<lake>/reports/`` and a short summary."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict

from framelake.config import STAGES, default_stages
from framelake.lock import lake_lock
from framelake.report import write_report
from framelake.runs import new_run_id, save_run
from framelake.runtime import Context
from jobs import frames, generate, normalize, shards, tokens
from jobs.stage import Stage, StageResult, context_from_args, run_stage
from udfs.schemas import TABLES

# The stages by name, in pipeline order (``framelake.config.STAGES``).
PIPELINE: dict[str, Stage] = {
    s.name: s for s in (normalize.stage, generate.stage, frames.stage, tokens.stage, shards.stage)}


def run_stages(ctx: Context, stages: list[str] | None = None, echo=print) -> list[StageResult]:
    """Run the stages (by default ``default_stages``) in pipeline order, holding the lake's run
    lock (``LakeLockedError`` if another run holds it)."""
    stages = default_stages(ctx.config) if stages is None else stages
    unknown = [s for s in stages if s not in PIPELINE]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r} (known: {', '.join(STAGES)})")
    with lake_lock(ctx.storage, ctx.lake.root):
        # Always in pipeline order, whatever order they were given in.
        return [run_stage(stage, ctx, echo) for name, stage in PIPELINE.items() if name in stages]


def run_pipeline(ctx: Context, stages: list[str] | None = None, echo=print,
                 run_id: str | None = None) -> tuple[list[StageResult], str]:
    """Run the stages, record the run and write its report; returns the results and the report's URI.
    The lake's run lock is held throughout, under the run's id (a new one unless given)."""
    run_id, started_at = run_id or new_run_id(), _utc_now()
    with lake_lock(ctx.storage, ctx.lake.root, run_id) as lock:
        results = run_stages(ctx, stages, echo)
        lock.check()
        record = run_record(ctx, run_id, started_at, results)
        save_run(ctx.lake, record)
        return results, write_report(ctx.config, ctx.lake, record)


def run_record(ctx: Context, run_id: str, started_at: str, results: list[StageResult]) -> dict:
    """What ``framelake report`` needs of a run: each stage's counts, time and items done."""
    stages = []
    for result in results:
        progress = ctx.progress.last(result.stage)
        stages.append({**asdict(result), "items": progress.as_dict() if progress else None})
    return {
        "run_id": run_id, "started_at": started_at, "finished_at": _utc_now(),
        "config": ctx.config.path, "engine": ctx.lake.engine, "stages": stages,
        "table_versions": {name: ctx.lake.info(name).version for name in TABLES},
    }


def _utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def summary(ctx: Context, results: list[StageResult]) -> str:
    """Rows per table, rejects by reason, and where the shards are."""
    lines = [f"lake: {ctx.lake.root} (engine: {ctx.lake.engine})", "tables:"]
    for name in ("samples", "rejects", "videos", "frames", "token_lengths", "shards"):
        info = ctx.lake.info(name)
        lines.append(f"  {name:<14} rows={info.rows:<8} version={info.version}")
    for result in results:
        notes = (result.details or {}).get("notes") or {}
        for source, counts in ((result.details or {}).get("sources") or {}).items():
            noted = "".join(f" {kind}={count}" for kind, count in sorted(notes.get(source, {}).items()))
            lines.append(
                f"  source {source}: in={counts['in']} samples={counts['samples']} rejects={counts['rejects']}{noted}")
    rejects = Counter(ctx.lake.read_arrow("rejects", columns=["reason"]).column("reason").to_pylist())
    if rejects:
        lines.append(f"rejects: {sum(rejects.values())}")
        for reason, count in rejects.most_common(8):
            lines.append(f"  {count:>5}  {reason[:100]}")
    shard_rows = ctx.lake.read_arrow("shards").to_pylist()
    if shard_rows:
        lines.append(f"shards: {ctx.lake.uri('shards')}")
        for key in sorted({(r["model"], r["format"]) for r in shard_rows}):
            group = [r for r in shard_rows if (r["model"], r["format"]) == key]
            lines.append(f"  {key[0]}/{key[1]}: {len(group)} shard(s), {sum(r['samples'] for r in group)} samples")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Entry point of ``spark-submit jobs/pipeline.py --config FILE``: every stage, the run
    record, the report and the summary."""
    ctx = context_from_args("framelake pipeline", argv)
    results, report = run_pipeline(ctx)
    print(summary(ctx, results))
    print(f"report: {report}")
    seconds = {f"{r.stage}_s": round(r.elapsed_s, 1) for r in results}
    print(StageResult("pipeline", seconds, sum(r.elapsed_s for r in results)).summary())


if __name__ == "__main__":
    main()
