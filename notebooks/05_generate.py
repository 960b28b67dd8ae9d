# Databricks notebook source
# MAGIC %md
# MAGIC # framelake 5: generate
# MAGIC
# MAGIC LLM-written samples, as MIMIC-IT's Syphus makes them: each recipe of `generate.recipes`
# MAGIC renders its queries into prompts, sends them to the OpenAI-compatible endpoint of
# MAGIC `generate.endpoint` (key from `OPENAI_API_KEY` only), and turns the replies into samples of
# MAGIC a source named after the recipe, rewrites of existing samples or translations; rejects keep
# MAGIC the raw reply. Writes `generations` (every reply, never asked for again), `samples`,
# MAGIC `rejects` and `lineage`. Rewrites and translations read `samples` (`01_normalize`); frames,
# MAGIC tokens and shards then take the new samples as any other.
# MAGIC
# MAGIC | parameter | meaning | default |
# MAGIC |---|---|---|
# MAGIC | `config`, `lake` | as in `00_pipeline` | |
# MAGIC | `recipes` | comma-separated recipe names or recipe files (`conf/recipes/*.yaml`) | the configured ones |
# MAGIC | `preview` | prompts previewed before the run (the cold-start loop), nothing written | 2 |

# COMMAND ----------

from dataclasses import replace

from pyspark.sql import functions as F

from framelake.notebook import Notebook
from jobs.generate import dry_run, preview, with_recipes

nb = Notebook.start(globals(), recipes="", preview="2")
names = [name.strip() for name in nb.params["recipes"].split(",") if name.strip()]
if names:
    nb.ctx = replace(nb.ctx, config=with_recipes(nb.ctx.config, names))
ctx = nb.ctx
recipes = ctx.config.generate.recipes
print(f"recipes: {', '.join(recipe.name for recipe in recipes)}\nendpoint: {ctx.config.generate.endpoint.base_url}")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Preview and cost, before anything is spent

# COMMAND ----------

for recipe in recipes:
    preview(ctx, recipe, int(nb.params["preview"]))
    print(dry_run(ctx, recipe))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Run the stage

# COMMAND ----------

result = nb.run_stage("generate")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Pairs, rejects and lineage

# COMMAND ----------

made = F.col("format").startswith("generate:")
nb.show(ctx.lake.read("samples").where(made).select("sample_id", "source", "language", "conversations"))
nb.show(ctx.lake.read("rejects").where(made).groupBy("source", "reason").count())
nb.show(ctx.lake.read("lineage").select("sample_id", "recipe", "kind", "query_id", "original_sample_id", "lang",
                                        "model", "endpoint_host", "prompt_tokens", "completion_tokens"))
