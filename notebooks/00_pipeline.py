# Databricks notebook source
# MAGIC %md
# MAGIC # framelake: the whole pipeline
# MAGIC
# MAGIC Runs normalize → frames → tokens → shards on the config's sources, then shows every table
# MAGIC and the token lengths per model.
# MAGIC
# MAGIC | parameter | meaning | default |
# MAGIC |---|---|---|
# MAGIC | `config` | framelake YAML, a path or `s3://` URI | `conf/local.yaml` (`conf/databricks.yaml` on Databricks) |
# MAGIC | `lake` | overrides the config's `lake` | empty: the config's |
# MAGIC | `stages` | comma-separated subset of `normalize,frames,tokens,shards` | all |
# MAGIC
# MAGIC On Databricks the parameters are widgets (job parameters in a job); elsewhere they come
# MAGIC from `FRAMELAKE_CONFIG`, `FRAMELAKE_LAKE`, `FRAMELAKE_STAGES`. The cluster needs framelake
# MAGIC installed: `%pip install` the wheel from `make dist` (see the README, "Running on a cluster").

# COMMAND ----------

from framelake.notebook import Notebook
from jobs.pipeline import run_stages, summary
from udfs.schemas import TABLES

nb = Notebook.start(globals(), stages="normalize,frames,tokens,shards")
ctx = nb.ctx
print(f"config: {nb.params['config']}\nlake: {ctx.lake.root} (engine: {ctx.lake.engine})")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Run the stages

# COMMAND ----------

results = run_stages(ctx, [stage.strip() for stage in nb.params["stages"].split(",") if stage.strip()])
print(summary(ctx, results))

# COMMAND ----------

# MAGIC %md
# MAGIC ## The tables
# MAGIC Each is a Delta table at `<lake>/tables/<name>`; with a `catalog` configured on Databricks,
# MAGIC also `<catalog>.<schema>.<name>`.

# COMMAND ----------

for name in TABLES:
    print(f"{name}: {ctx.lake.table_uri(name)}")
    nb.show(ctx.lake.read(name).drop("raw"), rows=5)

# COMMAND ----------

# MAGIC %md
# MAGIC ## Token lengths per model
# MAGIC Text plus visual tokens of every sample, against each model's `max_tokens` (dashed).

# COMMAND ----------

import matplotlib.pyplot as plt

lengths = ctx.lake.read("token_lengths").select("model", "total_tokens").toPandas().dropna()
max_tokens = {profile.name: profile.max_tokens for profile in ctx.config.models}
figure, axes = plt.subplots(figsize=(9, 4))
for model, group in lengths.groupby("model"):
    bars = axes.hist(group["total_tokens"], bins=20, alpha=0.6, label=model)[2]
    axes.axvline(max_tokens[model], linestyle="--", color=bars[0].get_facecolor())
axes.set_xlabel("tokens per sample (text + visual)")
axes.set_ylabel("samples")
axes.legend()
figure.tight_layout()
