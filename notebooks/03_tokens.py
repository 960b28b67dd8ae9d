# Databricks notebook source
# MAGIC %md
# MAGIC # framelake 3/4: tokens
# MAGIC
# MAGIC Exact token lengths of every sample for every configured model: text tokens from the
# MAGIC model's real tokenizer on its chat template, visual tokens from the frame sizes and the
# MAGIC model's rule. Writes `token_lengths`. Needs `samples`, `videos` and `frames`
# MAGIC (`01_normalize`, `02_frames`).
# MAGIC
# MAGIC Parameters: `config` and `lake`, as in `00_pipeline`.

# COMMAND ----------

from pyspark.sql import functions as F

from framelake.notebook import Notebook

nb = Notebook.start(globals())
ctx = nb.ctx

# COMMAND ----------

nb.run_stage("tokens")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Token lengths per model

# COMMAND ----------

lengths = ctx.lake.read("token_lengths")
nb.show(lengths.groupBy("model").agg(
    F.count(F.lit(1)).alias("samples"), F.count_if("fits").alias("fit"),
    F.min("total_tokens").alias("min_tokens"), F.avg("total_tokens").alias("mean_tokens"),
    F.max("total_tokens").alias("max_tokens"),
))
nb.show(lengths.select(
    "sample_id", "model", "n_frames", "text_tokens", "visual_tokens", "total_tokens", "fits", "reason"))
