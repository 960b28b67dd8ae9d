"""Samples that a rewrite recipe (``jobs.generate``) made a new version of: the original stays
in ``samples``, the tokens stage drops it for its rewrite and the generate stage reads the
rewrite in its place."""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from framelake.lake import Lake


def rewritten(lake: Lake) -> DataFrame:
    """``(sample_id, rewritten_as, rewritten_by)``: each original whose rewrite (``rewritten_as``,
    by the recipe ``rewritten_by``) is in ``samples``."""
    rewrites = lake.read("lineage").where(F.col("kind") == "rewrite").select(
        F.col("original_sample_id").alias("sample_id"), F.col("sample_id").alias("rewritten_as"),
        F.col("recipe").alias("rewritten_by"))
    present = lake.read("samples").select(F.col("sample_id").alias("rewritten_as"))
    return rewrites.join(present, "rewritten_as", "left_semi")
