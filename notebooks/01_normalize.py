# Databricks notebook source
# MAGIC %md
# MAGIC # framelake 1/4: normalize
# MAGIC
# MAGIC Every source's annotation files into one `samples` table in the canonical schema, and a
# MAGIC `rejects` table with the reason for each record that could not be used. Count in =
# MAGIC samples + rejects, per source.
# MAGIC
# MAGIC Parameters: `config` and `lake`, as in `00_pipeline` (widgets on Databricks,
# MAGIC `FRAMELAKE_CONFIG` / `FRAMELAKE_LAKE` elsewhere).

# COMMAND ----------

from framelake.notebook import Notebook

nb = Notebook.start(globals())
ctx = nb.ctx

# COMMAND ----------

result = nb.run_stage("normalize")
for source, counts in result.details["sources"].items():
    print(f"  {source}: in={counts['in']} samples={counts['samples']} rejects={counts['rejects']}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Samples and rejects

# COMMAND ----------

nb.show(ctx.lake.read("samples").select("sample_id", "source", "media_type", "media", "conversations"))
nb.show(ctx.lake.read("rejects").select("source", "source_file", "record_index", "reason"))
