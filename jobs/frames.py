"""Stage 2: decode each distinct media item of ``samples`` once into JPEG frames in the lake.

Writes the ``videos`` table (one row per media item, with a status) and the ``frames`` table
(one row per frame object). Media already extracted ``ok`` with the same sampling parameters
are skipped, so a rerun only does what is missing or failed.
"""
from __future__ import annotations

import hashlib
import re
import time

import pyarrow as pa
from pyspark.sql import functions as F

from framelake.config import FramesSettings
from framelake.runtime import Context, StageResult, stage_main
from framelake.storage import Storage, is_s3
from udfs.schemas import FRAMES, VIDEOS, to_spark_schema
from udfs.video import extract_media

FRAME_ENTRY = pa.struct([f for f in FRAMES if f.name != "video_id"])
EXTRACTED = pa.schema([*VIDEOS, pa.field("frames", pa.list_(FRAME_ENTRY))])
_URL = re.compile(r"https?://[^\s'\"]+")


class ExtractMedia:
    """mapInArrow function: media rows in, one extracted row (video + its frames) out each."""

    def __init__(self, settings: FramesSettings, storage: Storage, frames_root: str):
        self.settings = settings
        self.storage = storage
        self.frames_root = frames_root

    def __call__(self, batches):
        for batch in batches:
            rows = [self.extract(media) for media in batch.to_pylist()]
            if rows:
                yield pa.RecordBatch.from_pylist(rows, schema=EXTRACTED)

    def extract(self, media: dict) -> dict:
        s = self.settings
        result = extract_media(
            media["kind"], media["uri"], self.storage,
            fps=s.fps, start_s=media["start_s"], end_s=media["end_s"], max_frames=s.max_frames,
            max_side=s.max_side, quality=s.quality, timeout_s=s.timeout_s,
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


def run(ctx: Context) -> StageResult:
    started = time.time()
    params = ctx.config.frames.fingerprint()
    media = (
        ctx.lake.read("samples")
        .select(F.explode("media").alias("m"))
        .select("m.*")
        .dropDuplicates(["media_id"])
    )
    previous_videos = ctx.lake.read("videos")
    reusable = previous_videos.where((F.col("status") == "ok") & (F.col("params") == params))
    reusable_ids = reusable.select("video_id")
    todo = media.join(reusable_ids, media["media_id"] == reusable_ids["video_id"], "left_anti")
    n_todo = todo.count()
    extracted = (
        todo.repartition(max(1, min(n_todo, 512)))
        .mapInArrow(ExtractMedia(ctx.config.frames, ctx.storage, ctx.lake.uri("frames")), to_spark_schema(EXTRACTED))
        .persist()
    )
    try:
        videos = reusable.unionByName(extracted.select(*VIDEOS.names))
        reused_frames = ctx.lake.read("frames").join(reusable_ids, "video_id", "left_semi")
        new_frames = extracted.select("video_id", F.explode("frames").alias("f")).select("video_id", "f.*")
        ctx.lake.write("videos", videos)
        ctx.lake.write("frames", reused_frames.unionByName(new_frames))
        status = {row["status"]: row["count"] for row in extracted.groupBy("status").count().collect()}
        n_frames = extracted.agg(F.sum("n_frames")).first()[0] or 0
    finally:
        extracted.unpersist()
    counts = {"media": n_todo, "reused": reusable.count(), "ok": status.get("ok", 0),
              "failed": status.get("failed", 0), "frames": n_frames}
    return StageResult("frames", counts, time.time() - started)


if __name__ == "__main__":
    stage_main(run)
