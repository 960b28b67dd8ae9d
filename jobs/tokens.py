"""Stage 3: exact token lengths of every sample for every configured model.

Text tokens come from the model's real tokenizer (loaded once per Python worker), visual
tokens from the frame sizes in ``frames`` and the profile's rule: no decoding, no weights.
"""
from __future__ import annotations

import time

import pyarrow as pa
from pyspark.sql import functions as F

from framelake.runtime import Context, StageResult, stage_main
from jobs.sample_frames import samples_with_frames
from udfs.sample import RejectError
from udfs.schemas import TOKEN_LENGTHS, to_spark_schema
from udfs.selection import select_frames
from udfs.token_lengths import ModelProfile, token_lengths
from udfs.tokenizers import load_tokenizer


class CountTokens:
    """mapInArrow function: samples with frames in, one ``token_lengths`` row each out."""

    def __init__(self, profile: dict):
        self.profile = profile

    def __call__(self, batches):
        profile = ModelProfile.from_dict(self.profile)
        tokenizer = load_tokenizer(profile.tokenizer)
        for batch in batches:
            items, missing = [], {}
            for sample in batch.to_pylist():
                try:
                    selected = select_frames(sample["media_frames"], profile.max_frames)
                except RejectError as err:
                    selected, missing[sample["sample_id"]] = [], str(err)
                items.append({
                    "sample_id": sample["sample_id"],
                    "conversations": sample["conversations"],
                    "frame_sizes": [(f["width"], f["height"]) for frames in selected for f in frames],
                    "media_kind": _media_kind(sample["media_frames"]),
                })
            rows = token_lengths(profile, tokenizer, items)
            for row in rows:
                if row["sample_id"] in missing:
                    row.update(fits=False, reason=missing[row["sample_id"]])
            if rows:
                yield pa.RecordBatch.from_pylist(rows, schema=TOKEN_LENGTHS)


def _media_kind(media_frames: list[dict]) -> str:
    kinds = {m["kind"] for m in media_frames}
    if not kinds:
        return "text"
    return "image" if kinds == {"image"} else "video"


def run(ctx: Context) -> StageResult:
    started = time.time()
    inputs = samples_with_frames(ctx.lake).select("sample_id", "conversations", "media_frames").persist()
    try:
        per_model = [
            inputs.mapInArrow(CountTokens(profile), to_spark_schema(TOKEN_LENGTHS))
            for profile in ctx.config.models
        ]
        lengths = per_model[0]
        for more in per_model[1:]:
            lengths = lengths.unionByName(more)
        ctx.lake.write("token_lengths", lengths)
    finally:
        inputs.unpersist()
    counts = {
        row["model"]: f"{row['fits']}/{row['samples']} fit"
        for row in ctx.lake.read("token_lengths").groupBy("model").agg(
            F.count(F.lit(1)).alias("samples"), F.count_if("fits").alias("fits")
        ).collect()
    }
    return StageResult("tokens", counts, time.time() - started)


if __name__ == "__main__":
    stage_main(run)
