# Databricks notebook source
# MAGIC %md
# MAGIC # framelake 4/4: shards
# MAGIC
# MAGIC Training shards per model and format under `<lake>/shards/<model>/<format>/`, each with a
# MAGIC `manifest.json` written after its shards, and the `shards` table. Needs the tables of the
# MAGIC earlier stages (`01_normalize` to `03_tokens`).
# MAGIC
# MAGIC Parameters: `config` and `lake`, as in `00_pipeline`.

# COMMAND ----------

import json

from framelake.notebook import Notebook

nb = Notebook.start(globals())
ctx = nb.ctx

# COMMAND ----------

nb.run_stage("shards")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Shards and manifests

# COMMAND ----------

nb.show(ctx.lake.read("shards").orderBy("model", "format", "shard_path"))
for manifest in sorted(uri for uri in ctx.storage.list(ctx.lake.uri("shards")) if uri.endswith("manifest.json")):
    print(manifest, json.dumps(json.loads(ctx.storage.read_bytes(manifest)), indent=1)[:400])
