"""Stage: instruction pairs, rewrites and translations written by an LLM endpoint, each recipe
of ``generate.recipes`` in turn (``udfs.generate``).

A recipe's queries (a loader's, or samples of the lake) become requests on the executors
(``KeyRequests``): rendered, keyed (``udfs.generate.keys``) and their prompt tokens counted.
Requests whose reply is in the ``generations`` table are never sent again; the others are sent
in waves of about ``generate.wave_size``, each wave's tasks (``limits.tasks``) sending theirs
from ``limits.concurrency`` threads, the per-minute limits split between them. Each wave's
replies are appended to ``generations`` as one commit, while the next wave is sent: a killed
run loses at most the wave in flight, whose requests the rerun sends again. A run stops
sending at ``max_requests`` or ``max_tokens_total``; the queries left are pending, for the
next run.

Then every query's outcome is made from its stored reply (``udfs.generate.outcomes``): the
recipe's rows in ``samples``, ``rejects`` (with the raw reply) and ``lineage`` are replaced by
this run's. Queries = samples + rejects + pending, per recipe. A rewrite's original stays in
``samples``; the tokens stage drops it for its new version (``jobs.sample_versions``).
"""
from __future__ import annotations

import json
import math
import os
import random
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import pyarrow as pa
from pyspark.sql import functions as F

from framelake.config import Config, builtin_profile_dir
from framelake.failpoints import failpoint
from framelake.runtime import Context
from jobs.sample_versions import rewritten
from jobs.stage import ArrowTask, Stage, TaskNumbers, map_tasks, stage_main
from udfs.generate.client import RequestFailed, make_client, send
from udfs.generate.keys import prompt_hash, request_key
from udfs.generate.loaders import Query, get_loader
from udfs.generate.loaders.samples import queries_of_samples
from udfs.generate.outcomes import Request, outcome
from udfs.generate.prompt import Prompt, count_tokens, estimate_tokens, render, show
from udfs.generate.ratelimit import RateLimiter
from udfs.generate.recipe import Recipe
from udfs.generate.secrets import scrub
from udfs.generate.settings import Limits, ResolvedEndpoint, load_recipe, resolve
from udfs.sample import RejectError
from udfs.schemas import GENERATIONS, LINEAGE, MEDIA, SAMPLES, to_spark_schema

QUERIES = pa.schema([("query_id", pa.string()), ("media", pa.list_(MEDIA)), ("annotations", pa.string()),
                     ("sample", pa.struct(list(SAMPLES))), ("lang", pa.string()), ("problem", pa.string())])
# A query with its request: ``problem`` set when it cannot be made (then no key).
REQUESTS = pa.schema([*QUERIES, ("request_key", pa.string()), ("prompt_hash", pa.string()),
                      ("prompt_tokens", pa.int64())])
SENT = pa.schema([*GENERATIONS, ("error", pa.string())])  # ``error``: the request failed, no reply
OUTCOMES = pa.schema([("outcome", pa.string()), *SAMPLES, ("stage", pa.string()), ("reason", pa.string()),
                      *(f for f in LINEAGE if f.name != "sample_id")])


def query_row(query: Query) -> dict:
    return {"query_id": query.query_id, "media": query.media, "annotations": json.dumps(query.annotations),
            "sample": query.sample, "lang": query.lang, "problem": query.problem}


def query_of(row: dict) -> Query:
    return Query(row["query_id"], row["media"], json.loads(row["annotations"] or "null"), row["sample"],
                 row["lang"], row["problem"])


@dataclass(frozen=True)
class Renderer:
    """What makes a query's request the same on the driver and on every executor."""

    recipe: Recipe
    model: str
    response_format: bool
    prefix: tuple  # the loader's (system message, in-context turns), or (None, None)

    def render(self, query: Query) -> Prompt:
        return render(self.recipe, query, self.model, self.response_format, self.prefix)


class KeyRequests(ArrowTask):
    """Query rows (or, for the ``samples`` loader, sample rows) in, ``REQUESTS`` rows out."""

    def __init__(self, renderer: Renderer, from_samples: bool):
        self.renderer = renderer
        self.from_samples = from_samples

    def process(self, batches):
        recipe = self.renderer.recipe
        for batch in batches:
            rows = batch.to_pylist()
            if self.from_samples:
                queries = queries_of_samples(rows, recipe.queries.options.get("flagged_by", ()),
                                             [code for code, _ in recipe.languages])
            else:
                queries = map(query_of, rows)
            keyed = [self.key(query) for query in queries]
            if keyed:
                yield pa.RecordBatch.from_pylist(keyed, schema=REQUESTS)

    def key(self, query: Query) -> dict:
        row = query_row(query)
        if query.problem:
            return row
        try:
            prompt = self.renderer.render(query)
        except RejectError as err:
            return {**row, "problem": str(err)}
        profile = self.renderer.recipe.profile
        tokens = count_tokens(prompt.messages, profile) if profile else estimate_tokens(prompt.messages)
        return {**row, "request_key": request_key(prompt, self.renderer.recipe.version),
                "prompt_hash": prompt_hash(prompt.messages), "prompt_tokens": tokens}


class SendWave(TaskNumbers):
    """Task ``i`` sends the requests ``tasks[i]`` from ``limits.concurrency`` threads, each row
    out as its reply (or failure) arrives."""

    def __init__(self, renderer: Renderer, endpoint: ResolvedEndpoint, limits: Limits, tasks: list[list[dict]]):
        self.renderer = renderer
        self.endpoint = endpoint
        self.limits = limits
        self.tasks = tasks

    def task(self, number: int):
        share = len(self.tasks)  # the cluster's per-minute limits, split over the wave's tasks
        limits = self.limits
        limiter = RateLimiter(limits.requests_per_minute and limits.requests_per_minute / share,
                              limits.tokens_per_minute and limits.tokens_per_minute / share)
        client = make_client(self.endpoint)
        with ThreadPoolExecutor(limits.concurrency, "generate") as pool:
            futures = [pool.submit(self.send, client, limiter, row) for row in self.tasks[number]]
            for future in as_completed(futures):
                yield pa.RecordBatch.from_pylist([future.result()], schema=SENT)

    def send(self, client, limiter: RateLimiter, row: dict) -> dict:
        recipe, endpoint = self.renderer.recipe, self.endpoint
        prompt = self.renderer.render(query_of(row))
        sent = {"request_key": row["request_key"], "recipe": recipe.name, "recipe_version": recipe.version,
                "query_id": row["query_id"], "prompt_hash": row["prompt_hash"], "model": endpoint.model,
                "endpoint_host": endpoint.host, "sampling": sampling_json(recipe)}
        failpoint("generate.request")
        try:
            reply = send(client, endpoint, prompt, limiter, row["prompt_tokens"] + recipe.sampling.max_tokens,
                         random.Random(row["request_key"]))
        except RequestFailed as err:
            return {**sent, "error": str(err), "attempts": err.attempts}
        except Exception as err:  # noqa: BLE001 - a client bug fails this request, not the task
            return {**sent, "error": scrub(f"{type(err).__name__}: {err}", endpoint.key)}
        return {**sent, "reply": reply.reply, "finish_reason": reply.finish_reason,
                "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens,
                "attempts": reply.attempts, "elapsed_s": reply.elapsed_s}


class Outcomes(ArrowTask):
    """``REQUESTS`` rows joined with their stored reply in, ``OUTCOMES`` rows out."""

    def __init__(self, recipe: Recipe, endpoint: ResolvedEndpoint, failures: dict[str, str]):
        self.recipe = recipe
        self.endpoint = endpoint
        self.failures = failures

    def process(self, batches):
        sampling = sampling_json(self.recipe)
        for batch in batches:
            rows = []
            for row in batch.to_pylist():
                request = Request(row["request_key"], row["prompt_hash"], self.endpoint.model, sampling,
                                  self.endpoint.host, row["problem"])
                generation = row if row["reply_stored"] else None
                rows.append(outcome(self.recipe, query_of(row), request, generation,
                                    self.failures.get(row["request_key"])))
            if rows:
                yield pa.RecordBatch.from_arrays(
                    [pa.array([r.get(f.name) for r in rows], f.type) for f in OUTCOMES], schema=OUTCOMES)


def sampling_json(recipe: Recipe) -> str:
    return json.dumps(recipe.sampling.params(), sort_keys=True)


def renderer_of(recipe: Recipe, endpoint: ResolvedEndpoint) -> Renderer:
    prefix = get_loader(recipe.queries.loader).prefix(recipe.queries.options)
    return Renderer(recipe, endpoint.model, endpoint.settings.response_format, prefix)


def queries_frame(ctx: Context, recipe: Recipe):
    """(the rows ``KeyRequests`` takes, whether they are samples)."""
    loader = get_loader(recipe.queries.loader)
    options = recipe.queries.options
    if not loader.reads_samples:
        rows = [query_row(q) for q in loader.load(options, ctx.storage.open_read)]
        return ctx.spark.createDataFrame(rows, to_spark_schema(QUERIES)), False
    samples = ctx.lake.read("samples").where(F.col("format") != recipe.output_format)  # never its own output
    if options.get("sources"):
        samples = samples.where(F.col("source").isin(*options["sources"]))
    if options.get("where"):
        samples = samples.where(F.coalesce(F.expr(options["where"]), F.lit(False)))
    others = rewritten(ctx.lake).where(F.col("rewritten_by") != recipe.name)
    return samples.join(others.select("sample_id"), "sample_id", "left_anti"), True  # their rewrites stand in


def requests_frame(ctx: Context, renderer: Renderer):
    rows, from_samples = queries_frame(ctx, renderer.recipe)
    return rows.mapInArrow(KeyRequests(renderer, from_samples), to_spark_schema(REQUESTS))


class GenerateStage(Stage):
    name = "generate"

    def execute(self, ctx: Context) -> tuple[dict, dict]:
        settings = ctx.config.generate
        if not settings.recipes:
            return {"recipes": 0}, None
        endpoint = resolve(settings.endpoint, os.environ)
        per_recipe = {}
        budget = Budget(settings.limits.max_requests, settings.limits.max_tokens_total)
        for recipe in settings.recipes:
            per_recipe[recipe.name] = generate_recipe(ctx, recipe, endpoint, budget)
        totals = {key: sum(counts[key] for counts in per_recipe.values())
                  for key in ("queries", "samples", "rejects", "pending", "pairs", "sent", "failed", "tokens")}
        return {"recipes": len(per_recipe), **totals}, {"recipes": per_recipe}


@dataclass
class Budget:
    """What one run may still spend: requests, and prompt plus completion tokens."""

    requests: int | None
    tokens: int | None

    def take(self, rows: list[dict], max_tokens: int) -> list[dict]:
        """The first of ``rows`` this budget lets go, their tokens counted at most (prompt and
        ``max_tokens``); the actual spend is charged after (``spent``)."""
        taken, tokens = [], 0
        for row in rows:
            if self.requests is not None and len(taken) >= self.requests:
                break
            cost = row["prompt_tokens"] + max_tokens
            if self.tokens is not None and tokens + cost > self.tokens:
                break
            taken.append(row)
            tokens += cost
        return taken

    def spent(self, requests: int, tokens: int) -> None:
        if self.requests is not None:
            self.requests -= requests
        if self.tokens is not None:
            self.tokens -= tokens


def generate_recipe(ctx: Context, recipe: Recipe, endpoint: ResolvedEndpoint, budget: Budget) -> dict:
    """Send what ``recipe`` still needs, then write its outcomes; its counts."""
    renderer = renderer_of(recipe, endpoint)
    requests = requests_frame(ctx, renderer).persist()
    try:
        sent = send_waves(ctx, renderer, endpoint, requests, budget)
        counts = write_outcomes(ctx, recipe, endpoint, requests, sent["failures"])
    finally:
        requests.unpersist()
    return {**counts, **{k: v for k, v in sent.items() if k != "failures"}}


def stored_keys(ctx: Context):
    return ctx.lake.read("generations").select("request_key").distinct()


def send_waves(ctx: Context, renderer: Renderer, endpoint: ResolvedEndpoint, requests, budget: Budget) -> dict:
    """Send the requests without a stored reply, wave after wave, each wave's replies committed
    while the next one is sent; the counts, and the failures of this run by request key."""
    settings = ctx.config.generate
    recipe = renderer.recipe
    todo = (requests.where(F.col("problem").isNull()).dropDuplicates(["request_key"])
            .join(stored_keys(ctx), "request_key", "left_anti"))
    n_todo = todo.count()
    ctx.progress.total(n_todo, "requests")
    counts = {"sent": 0, "failed": 0, "tokens": 0, "waves": 0, "failures": {}}
    n_waves = max(1, math.ceil(n_todo / settings.wave_size))
    # Waves by a hash of the key: each is the same set of requests however often it is computed.
    todo = todo.withColumn("wave", F.pmod(F.xxhash64("request_key"), F.lit(n_waves)))
    if n_waves > 1:
        todo = todo.sortWithinPartitions("wave").persist()

    def commit(replies, done: list) -> None:
        try:
            ctx.lake.write("generations", replies.where(F.col("error").isNull()).coalesce(1), "append")
        finally:
            replies.unpersist()
        ctx.progress.advance(len(done))

    try:
        with ThreadPoolExecutor(1, "generate-commit") as committer:
            committed = None
            for wave in range(n_waves if n_todo else 0):
                rows = sorted((row.asDict(recursive=True) for row in todo.where(F.col("wave") == wave).collect()),
                              key=lambda row: row["request_key"])
                if not rows:
                    continue  # a wave is a hash bucket: a small run may leave one empty
                rows = budget.take(rows, recipe.sampling.max_tokens)
                if not rows:
                    break  # the budget is spent: the rest are pending
                tasks = [rows[i::min(settings.limits.tasks, len(rows))]
                         for i in range(min(settings.limits.tasks, len(rows)))]
                replies = map_tasks(ctx.spark, len(tasks), SendWave(renderer, endpoint, settings.limits, tasks),
                                    SENT).persist()
                try:
                    done = replies.select("request_key", "error", "prompt_tokens", "completion_tokens").collect()
                    if committed is not None:
                        committed.result()
                    failpoint("generate.before_commit")
                except BaseException:
                    replies.unpersist()
                    raise
                committed = committer.submit(commit, replies, done)
                spent = sum((r["prompt_tokens"] or 0) + (r["completion_tokens"] or 0) for r in done)
                budget.spent(len(done), spent)
                counts["failures"].update({r["request_key"]: r["error"] for r in done if r["error"]})
                counts.update(sent=counts["sent"] + len(done), tokens=counts["tokens"] + spent,
                              waves=counts["waves"] + 1)
            if committed is not None:
                committed.result()
    finally:
        todo.unpersist()
    counts["failed"] = len(counts["failures"])
    return counts


def write_outcomes(ctx: Context, recipe: Recipe, endpoint: ResolvedEndpoint, requests, failures: dict) -> dict:
    """Replace the recipe's rows in ``samples``, ``rejects`` and ``lineage`` by the outcomes of
    its queries now; their counts."""
    replies = ctx.lake.read("generations").dropDuplicates(["request_key"]).select(
        "request_key", "reply", "finish_reason", F.col("prompt_tokens").alias("used_prompt_tokens"),
        "completion_tokens", F.lit(True).alias("reply_stored"))
    joined = (requests.drop("prompt_tokens").join(replies, "request_key", "left")
              .withColumnRenamed("used_prompt_tokens", "prompt_tokens")
              .withColumn("reply_stored", F.coalesce("reply_stored", F.lit(False))))
    outcomes = joined.mapInArrow(Outcomes(recipe, endpoint, failures), to_spark_schema(OUTCOMES)).persist()
    try:
        fmt = recipe.output_format
        for name, rows, column, value in (
                ("samples", outcomes.where(F.col("outcome") == "sample"), "format", fmt),
                ("rejects", outcomes.where(F.col("outcome") == "reject"), "format", fmt),
                ("lineage", outcomes.where(F.col("outcome") == "sample"), "recipe", recipe.name)):
            ctx.lake.replace(name, rows, column, [value], [value] if ctx.lake.exists(name) else [])
        by_outcome = {row["outcome"]: (row["count"], row["pairs"]) for row in outcomes.groupBy("outcome").agg(
            F.count(F.lit(1)).alias("count"),
            F.sum(F.size(F.filter("conversations", lambda t: t["role"] == "assistant"))).alias("pairs")).collect()}
    finally:
        outcomes.unpersist()
    counts = {kind: by_outcome.get(kind, (0, 0))[0] for kind in ("sample", "reject", "pending")}
    return {"queries": sum(counts.values()), "samples": counts["sample"], "rejects": counts["reject"],
            "pending": counts["pending"], "pairs": by_outcome.get("sample", (0, 0))[1] or 0}


def preview(ctx: Context, recipe: Recipe, n: int, echo=print) -> None:
    """The cold-start loop: ``n`` queries' prompts, the endpoint's raw replies and what they
    parse into (the pairs, or the reject's reason). Nothing is written."""
    endpoint = resolve(ctx.config.generate.endpoint, os.environ)
    renderer = renderer_of(recipe, endpoint)
    client = make_client(endpoint)
    limiter = RateLimiter(ctx.config.generate.limits.requests_per_minute, ctx.config.generate.limits.tokens_per_minute)
    for k, row in enumerate(requests_frame(ctx, renderer).limit(n).collect(), 1):
        row = row.asDict(recursive=True)
        query = query_of(row)
        echo(f"=== {recipe.name} query {k}/{n}: {query.query_id}")
        if row["problem"]:
            echo(f"--- reject: {row['problem']}")
            continue
        prompt = renderer.render(query)
        echo(f"--- prompt ({row['prompt_tokens']} tokens)\n{show(prompt.messages)}")
        try:
            reply = send(client, endpoint, prompt, limiter, row["prompt_tokens"] + recipe.sampling.max_tokens,
                         random.Random(row["request_key"]))
        except RequestFailed as err:
            echo(f"--- request failed: {err}")
            continue
        echo(f"--- raw reply ({reply.finish_reason}, {reply.completion_tokens} tokens)\n{reply.reply}")
        generation = {"reply": reply.reply, "finish_reason": reply.finish_reason,
                      "prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
        result = outcome(recipe, query, Request(row["request_key"], row["prompt_hash"], endpoint.model,
                                                sampling_json(recipe), endpoint.host), generation)
        if result["outcome"] == "reject":
            echo(f"--- reject: {result['reason']}")
        else:
            echo("--- parsed\n" + show(result["conversations"]))


def dry_run(ctx: Context, recipe: Recipe) -> dict:
    """What a run of ``recipe`` would send, before anything is spent: its queries, the requests
    with a stored reply, those to send and their prompt tokens (``counted`` with the recipe's
    model profile, else ``estimated``), and the most completion tokens they may take."""
    endpoint = resolve(ctx.config.generate.endpoint, os.environ)
    requests = requests_frame(ctx, renderer_of(recipe, endpoint)).persist()
    try:
        keyed = requests.where(F.col("problem").isNull()).dropDuplicates(["request_key"])
        todo = keyed.join(stored_keys(ctx), "request_key", "left_anti")
        queries, problems = requests.agg(F.count(F.lit(1)), F.count("problem")).first()
        requests_todo, prompt_tokens = todo.agg(F.count(F.lit(1)), F.sum("prompt_tokens")).first()
        stored = keyed.count() - requests_todo
    finally:
        requests.unpersist()
    return {"recipe": recipe.name, "queries": queries, "unrenderable": problems, "stored": stored,
            "requests": requests_todo, "prompt_tokens": prompt_tokens or 0,
            "prompt_tokens_are": "counted" if recipe.profile else "estimated",
            "max_completion_tokens": requests_todo * recipe.sampling.max_tokens}


def with_recipes(config: Config, names: list[str]) -> Config:
    """``config`` with only the recipes ``names``: configured ones by name, others read from
    their file (a recipe with a ``translate:`` block brings its translation along)."""
    settings = config.generate
    configured = {recipe.name for recipe in settings.recipes}
    chosen = []
    for name in names:
        if name in configured:
            chosen.append(settings.recipe(name))
        else:
            chosen += load_recipe(name, f"recipe {name}", lambda path: Path(path).read_text(encoding="utf-8"),
                                  [builtin_profile_dir()])
    return replace(config, generate=replace(settings, recipes=tuple(chosen)))


stage = GenerateStage()

if __name__ == "__main__":
    stage_main(stage)
