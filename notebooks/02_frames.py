# Databricks notebook source
# MAGIC %md
# MAGIC # framelake 2/4: frames
# MAGIC
# MAGIC Decodes each distinct video or image of `samples` once with ffmpeg into JPEG frames under
# MAGIC `<lake>/frames/`, and writes the `videos` (one row per media item, with its status) and
# MAGIC `frames` tables. Media already extracted with the same settings are reused. Needs the
# MAGIC `samples` table (`01_normalize`).
# MAGIC
# MAGIC Parameters: `config` and `lake`, as in `00_pipeline`.

# COMMAND ----------

from framelake.notebook import Notebook

nb = Notebook.start(globals())
ctx = nb.ctx

# COMMAND ----------

nb.run_stage("frames")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Videos and their frames

# COMMAND ----------

nb.show(ctx.lake.read("videos").select("video_id", "kind", "status", "error", "duration_s", "n_frames", "strategy"))
nb.show(ctx.lake.read("frames").select("video_id", "frame_index", "timestamp_s", "width", "height", "uri"))
