"""What each lake engine costs: the same stages on the same inputs on delta-rs and on
delta-spark, in one session that has both (Delta's jars from ``make jars``).

- ``normalize_rps_delta_rs`` / ``normalize_rps_delta_spark``: records a second normalizing a
  VideoChat2-IT-shaped corpus (bench_normalize's records) into a fresh lake;
- ``tokens_stage_s_delta_rs`` / ``tokens_stage_s_delta_spark``: the tokens stage (one model)
  over those samples;
- ``frames_spark_overhead_delta_rs`` / ``frames_spark_overhead_delta_spark``: the frames stage
  on 2 cores against the plain 2-process pool on the same media, as ``frames_spark_overhead``
  of bench_frames measures it (target ≤ 0.15 there), here with each engine's commits;
- ``*_delta_spark_vs_delta_rs``: delta-spark's time over delta-rs's.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.bench_frames import SETTINGS, bench_videos, copies, media_row, pool_time
from bench.bench_normalize import FILES, generate
from bench.common import local_spark
from framelake.config import load_config, parse_config
from framelake.runtime import Context

ENGINES = ("delta-rs", "delta-spark")
QUICK_RECORDS, FULL_RECORDS = 100_000, 400_000
MODEL = {"name": "minicpm-llama3-v2_5", "profile": "minicpm-llama3-v2_5"}


def _seconds(stage, ctx) -> float:
    started = time.perf_counter()
    result = stage(ctx)
    elapsed = time.perf_counter() - started
    print(f"   {ctx.lake.engine}: {result.summary()}", flush=True)
    return elapsed


def normalize_and_tokens(spark, data: Path, lake: Path, engine: str) -> tuple[float, float]:
    from jobs import normalize, tokens

    config = parse_config({
        "lake": {"root": str(lake), "engine": engine},
        "sources": [{"name": "videochat2_bench", "format": "videochat2", "annotations": str(data),
                     "media_root": "/data/videochat2", "media_type": "video"}],
        "models": [MODEL],
    })
    ctx = Context.create(config, spark)
    return _seconds(normalize.stage, ctx), _seconds(tokens.stage, ctx)


def frames_time(spark, media: list[Path], lake: Path, engine: str) -> float:
    from jobs import frames
    from udfs.schemas import SAMPLES, to_spark_schema

    config = load_config("conf/local.yaml", overrides={"lake": {"root": str(lake), "engine": engine},
                                                       "frames": {"timeout_s": SETTINGS.timeout_s}})
    ctx = Context.create(config, spark)
    samples = [{
        "sample_id": f"s{i}", "source": "bench", "format": "llava", "media_type": "video", "media": [media_row(v)],
        "conversations": [{"role": "user", "content": "<media>"}], "in_context": [], "language": "en",
        "source_file": "bench.json", "record_index": i, "raw": "{}",
    } for i, v in enumerate(media)]
    ctx.lake.write("samples", spark.createDataFrame(samples, to_spark_schema(SAMPLES)))
    return _seconds(frames.stage, ctx)


def run(quick: bool = True) -> dict[str, float]:
    records = QUICK_RECORDS if quick else FULL_RECORDS
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_engines_") as tmp:
        work = Path(tmp)
        generate(work / "videochat2", records, FILES)
        videos = bench_videos(quick)
        media = copies(videos, 3 if quick else 10, work / "copies")
        pool_s = pool_time(media, work, processes=2)
        print(f"   pool, 2 processes: {pool_s:.2f} s for {len(media)} media", flush=True)
        spark = local_spark(cores=2, delta_spark=True)
        try:
            # Warm the session and a worker a core first, as the pool was started first.
            frames_time(spark, media[:2], work / "warm", "delta-rs")
            for engine in ENGINES:
                suffix = engine.replace("-", "_")
                normalize_s, tokens_s = normalize_and_tokens(spark, work / "videochat2", work / engine, engine)
                frames_s = frames_time(spark, media, work / f"frames-{engine}", engine)
                figures[f"normalize_rps_{suffix}"] = records / normalize_s
                figures[f"tokens_stage_s_{suffix}"] = tokens_s
                figures[f"frames_spark_overhead_{suffix}"] = frames_s / pool_s - 1
        finally:
            spark.stop()
    for key in ("normalize_rps", "tokens_stage_s"):
        rs, ds = figures[f"{key}_delta_rs"], figures[f"{key}_delta_spark"]
        figures[f"{key.split('_')[0]}_delta_spark_vs_delta_rs"] = rs / ds if key == "normalize_rps" else ds / rs
    return figures
