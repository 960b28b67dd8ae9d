"""The whole pipeline: normalize → frames → tokens → shards, then a short summary."""
from __future__ import annotations

from collections import Counter

from framelake.config import STAGES
from framelake.runtime import Context, StageResult, stage_main
from jobs import frames, normalize, shards, tokens

STAGE_RUNS = {"normalize": normalize.run, "frames": frames.run, "tokens": tokens.run, "shards": shards.run}


def run_stages(ctx: Context, stages: list[str] = list(STAGES), echo=print) -> list[StageResult]:
    unknown = [s for s in stages if s not in STAGE_RUNS]
    if unknown:
        raise ValueError(f"unknown stage {unknown[0]!r} (known: {', '.join(STAGES)})")
    results = []
    for stage in STAGES:  # always in pipeline order, whatever order they were given in
        if stage in stages:
            echo(f"[{stage}] running")
            results.append(STAGE_RUNS[stage](ctx))
            echo(results[-1].summary())
    return results


def summary(ctx: Context, results: list[StageResult]) -> str:
    """Rows per table, rejects by reason, and where the shards are."""
    lines = [f"lake: {ctx.lake.root} (engine: {ctx.lake.engine})", "tables:"]
    for name in ("samples", "rejects", "videos", "frames", "token_lengths", "shards"):
        info = ctx.lake.info(name)
        lines.append(f"  {name:<14} rows={info.rows:<8} version={info.version}")
    for result in results:
        for source, counts in ((result.details or {}).get("sources") or {}).items():
            lines.append(f"  source {source}: in={counts['in']} samples={counts['samples']} rejects={counts['rejects']}")
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


def run(ctx: Context) -> StageResult:
    """All stages, as one StageResult (for ``spark-submit jobs/pipeline.py``)."""
    results = run_stages(ctx)
    print(summary(ctx, results))
    counts = {f"{r.stage}_s": round(r.elapsed_s, 1) for r in results}
    return StageResult("pipeline", counts, sum(r.elapsed_s for r in results))


if __name__ == "__main__":
    stage_main(run)
