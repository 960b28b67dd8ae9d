"""Stage 2: decode each distinct media item of ``samples`` once into JPEG frames in the lake.

Writes the ``videos`` table (one row per media item, with a status) and the ``frames`` table
(one row per frame object). Media already extracted ``ok`` with the same sampling parameters
are skipped, so a rerun only does what is missing or failed; a failure that happens again the
same way is not written again.

The media to do are extracted in waves of about ``frames.wave_size`` items, each committed
(appended) on its own, so a killed run keeps the waves it finished; a wave is committed while
the next one extracts, so the executors do not wait for the driver. A wave first deletes the
rows earlier runs left for its media (failed, or made with other parameters), then appends
its frames, then its videos: a ``videos`` row is written last, so an ``ok`` row always has its
frames, and frames a run killed between the two commits left behind are deleted when their
media are redone. Readers go by ``videos``: frames without an ``ok`` video row are not used.
"""
from __future__ import annotations

import hashlib
import math
import re
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
from pyspark.sql import functions as F

from framelake.config import FramesSettings
from framelake.failpoints import failpoint
from framelake.runtime import Context
from framelake.storage import Storage
from jobs.stage import Stage, TaskNumbers, map_tasks, stage_main
from udfs.schemas import FRAMES, VIDEOS
from udfs.video import extract_media

FRAME_ENTRY = pa.struct([f for f in FRAMES if f.name != "video_id"])
EXTRACTED = pa.schema([*VIDEOS, pa.field("frames", pa.list_(FRAME_ENTRY))])
# Between two Spark tasks a core waits (docs/measurements.md), while a still (image, frame
# folder) takes milliseconds. So a task extracts up to STILLS_PER_TASK stills, or one video, or
# small videos together up to TASK_BYTES (about a second of extraction). Their tasks are never
# fewer than MIN_VIDEO_TASKS (or one a video), so every core gets several.
STILLS_PER_TASK = 64
TASK_BYTES = 8 << 20
MIN_VIDEO_TASKS = 64
_URL = re.compile(r"https?://[^\s'\"]+")


class ExtractMedia:
    """The UDF: a media row in, its extracted row (video + its frames) out, the JPEGs written
    under ``frames_root``. ``threads``: decoder threads per media item."""

    def __init__(self, settings: FramesSettings, storage: Storage, frames_root: str, threads: int = 1):
        self.settings = settings
        self.storage = storage
        self.frames_root = frames_root
        self.threads = threads

    def extract(self, media: dict) -> dict:
        s = self.settings
        result = extract_media(
            media["kind"], media["uri"], self.storage, s.sampling().clip(media["start_s"], media["end_s"]),
            threads=self.threads,
        )
        frames = []
        try:
            for frame in result.frames:
                uri = f"{self.frames_root}/{media['media_id']}/{frame.frame_index:05d}.jpg"
                self.storage.write_bytes(uri, frame.jpeg)
                frames.append({
                    "frame_index": frame.frame_index, "timestamp_s": frame.timestamp_s, "uri": uri,
                    "width": frame.width, "height": frame.height, "bytes": len(frame.jpeg),
                    "sha256": hashlib.sha256(frame.jpeg).hexdigest(),
                })
            status, error = result.status, result.error
        except Exception as err:  # a store failure mid-video fails this video, not the job
            status, error = "failed", f"writing frames: {type(err).__name__}: {err}"
        if status == "ok" and not frames:
            status, error = "failed", "no frames decoded in the sampled range"
        if status != "ok":  # a video that failed part way keeps none of its frames
            frames = []
        if error:  # ffmpeg may quote its input: a presigned URL carries credentials
            error = _URL.sub(media["uri"], error)
        return {
            "video_id": media["media_id"], "uri": media["uri"], "kind": media["kind"],
            "start_s": media["start_s"], "end_s": media["end_s"],
            "status": status, "error": error,
            "duration_s": result.duration_s, "width": result.width, "height": result.height,
            "codec": result.codec, "fps_native": result.fps_native,
            "n_frames": len(frames), "params": s.fingerprint(), "strategy": result.strategy,
            "elapsed_s": result.elapsed_s, "frames": frames,
        }


class ExtractWave(TaskNumbers):
    """Task ``i`` extracts the media rows ``tasks[i]``. A wave's media rows are few and travel
    with the function."""

    def __init__(self, extract: ExtractMedia, tasks: list[list[dict]]):
        self.extract = extract
        self.tasks = tasks

    def task(self, number: int):
        for media in self.tasks[number]:  # one row out per item: nothing piles up
            yield pa.RecordBatch.from_pylist([self.extract.extract(media)], schema=EXTRACTED)


def wave_tasks(media: list[dict], sizes: list[int | None]) -> list[list[dict]]:
    """The media of a wave grouped into tasks, longest first (Spark starts them in this order,
    so the last to end are short). ``sizes``: each item's bytes, None where unknown (such a
    video gets a task of its own). Videos are packed biggest first up to a task's bytes."""
    videos = sorted(((size, item) for size, item in zip(sizes, media) if item["kind"] == "video"),
                    key=lambda video: -math.inf if video[0] is None else -video[0])
    stills = [m for m in media if m["kind"] != "video"]
    known = sum(size for size, _ in videos if size is not None)
    task_bytes = min(TASK_BYTES, known / MIN_VIDEO_TASKS)
    tasks: list[list[dict]] = []
    filled = math.inf
    for size, item in videos:
        size = math.inf if size is None else size
        if filled + size > task_bytes:
            tasks.append([])
            filled = 0
        tasks[-1].append(item)
        filled += size
    return tasks + [stills[i: i + STILLS_PER_TASK] for i in range(0, len(stills), STILLS_PER_TASK)]


def media_sizes(storage: Storage, media: list[dict]) -> list[int | None]:
    """Each video's bytes (None for stills, and where the store cannot say: its extraction
    reports why), asked concurrently: on S3 each is a HEAD request."""
    def size(item: dict) -> int | None:
        if item["kind"] != "video":
            return None
        try:
            return storage.size(item["uri"])
        except Exception:  # noqa: BLE001 - a missing or unreadable video fails in its extraction
            return None

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(size, media))


class FramesStage(Stage):
    name = "frames"

    def execute(self, ctx: Context) -> tuple[dict, None]:
        return extract_waves(ctx), None


def extract_waves(ctx: Context) -> dict:
    """Extract the media to do, wave after wave; the counts."""
    settings = ctx.config.frames
    params = settings.fingerprint()
    media = (
        ctx.lake.read("samples")  # in-context examples' media too: formats may show them (shards.in_context)
        .select(F.explode(F.concat("media", F.flatten(F.transform("in_context", lambda e: e["media"])))).alias("m"))
        .select("m.*")
        .dropDuplicates(["media_id"])
    )
    previous = ctx.lake.read("videos").select("video_id", "status", "params", "error")
    reusable = previous.where((F.col("status") == "ok") & (F.col("params") == params)).select(
        "video_id", F.lit(True).alias("reusable"))
    # Media with rows from earlier runs (failed, other parameters, frames of a killed wave):
    # each wave deletes its own before appending.
    earlier = (previous.select("video_id").unionByName(ctx.lake.read("frames").select("video_id"))
               .distinct().withColumn("earlier", F.lit(True)))
    # Failures are tried again; one that happens again the same way is not written again (unless
    # a killed wave left frames rows for it, which its rewrite deletes).
    failed = previous.where((F.col("status") == "failed") & (F.col("params") == params)).join(
        ctx.lake.read("frames").select("video_id"), "video_id", "left_anti").select(
        "video_id", F.col("error").alias("failed_with"))
    flagged = (
        media.join(reusable, media["media_id"] == reusable["video_id"], "left").drop("video_id")
        .join(earlier, F.col("media_id") == earlier["video_id"], "left").drop("video_id")
        .join(failed, F.col("media_id") == failed["video_id"], "left").drop("video_id")
    )
    is_todo = F.col("reusable").isNull()
    summary = flagged.agg(  # one job for all the counts the waves need
        F.count(F.when(is_todo, 1)).alias("todo"),
        F.count("reusable").alias("reused"),
        F.collect_list(F.when(is_todo & F.col("earlier"), F.col("media_id"))).alias("stale"),
        F.collect_list(F.when(F.col("failed_with").isNotNull(), F.struct("media_id", "failed_with"))).alias("failed"),
    ).first()
    n_todo, stale = summary["todo"], set(summary["stale"])
    failed_with = {row["media_id"]: row["failed_with"] for row in summary["failed"]}
    ctx.progress.total(n_todo, "videos")
    # Waves by a hash of the id: each wave is the same set of media however often it is
    # computed, and the rows earlier waves commit belong to other waves.
    n_waves = max(1, math.ceil(n_todo / settings.wave_size))
    todo = flagged.where(is_todo).select(*media.columns).withColumn(
        "wave", F.pmod(F.xxhash64("media_id"), F.lit(n_waves)))
    if n_waves > 1:
        # Read once, not once per wave. Sorted by wave, each cached batch holds few waves, and a
        # wave's filter skips the others by their min/max.
        todo = todo.sortWithinPartitions("wave").persist()
    extract = ExtractMedia(settings, ctx.storage, ctx.lake.uri("frames"), task_cpus(ctx.spark))
    counts = {"media": n_todo, "reused": summary["reused"], "ok": 0, "failed": 0, "frames": 0, "waves": 0}

    def plan(wave: int) -> list[list[dict]]:
        wave_media = [row.asDict() for row in todo.where(F.col("wave") == wave).drop("wave").collect()]
        return wave_tasks(wave_media, media_sizes(ctx.storage, wave_media))

    def commit(extracted, done: list) -> None:
        try:
            wave_ids = sorted(row["video_id"] for row in done
                              if row["status"] != "failed" or failed_with.get(row["video_id"]) != row["error"])
            if wave_ids:
                changed = extracted.where(F.col("video_id").isin(wave_ids))
                commit_wave(ctx, changed, wave_ids, sorted(stale.intersection(wave_ids)))
        finally:
            extracted.unpersist()
        for row in done:
            counts[row["status"]] += 1
            counts["frames"] += row["n_frames"]
        counts["waves"] += 1
        ctx.progress.advance(len(done))

    # The executors extract wave after wave without waiting for the driver: while one wave
    # extracts, the next is planned (its media collected, their sizes asked: on S3 a HEAD
    # each) and the previous one committed. Commits stay one at a time and in wave order.
    try:
        with ThreadPoolExecutor(1, "frames-plan") as planner, ThreadPoolExecutor(1, "frames-commit") as committer:
            planned, committed = planner.submit(plan, 0), None
            for wave in range(n_waves):
                tasks = planned.result()
                if wave + 1 < n_waves:
                    planned = planner.submit(plan, wave + 1)
                if not tasks:
                    continue
                extracted = map_tasks(ctx.spark, len(tasks), ExtractWave(extract, tasks), EXTRACTED).persist()
                try:
                    done = extracted.select("video_id", "status", "n_frames", "error").collect()  # extracts the wave
                    if committed is not None:
                        committed.result()
                except BaseException:
                    extracted.unpersist()
                    raise
                committed = committer.submit(commit, extracted, done)
            if committed is not None:
                committed.result()
    finally:
        todo.unpersist()
    return counts


def commit_wave(ctx: Context, extracted, wave_ids: list[str], replaced_ids: list[str]) -> None:
    """Commit one wave: its frames, then its videos rows (see the module docstring for why in
    this order), each in place of what earlier runs left for ``replaced_ids``."""
    rows = extracted.coalesce(1)  # a wave's rows are few: one file per table and wave
    new_frames = rows.select("video_id", F.explode("frames").alias("f")).select("video_id", "f.*")
    ctx.lake.replace("frames", new_frames, "video_id", wave_ids, replaced_ids)
    failpoint("frames.between_commits")
    ctx.lake.replace("videos", rows.select(*VIDEOS.names), "video_id", wave_ids, replaced_ids)


def task_cpus(spark) -> int:
    """Cores Spark gives each task (``spark.task.cpus``): decoder threads per media item, so
    concurrent extractions share the executor's cores instead of oversubscribing them."""
    return int(spark.conf.get("spark.task.cpus", "1") or 1)


stage = FramesStage()

if __name__ == "__main__":
    stage_main(stage)
