"""The generate stage against plain clients of the same local llama-server (SmolLM2-135M,
``--parallel 4``), over the same requests: the MIMIC-IT dense-caption recipe on synthetic
captions, text-only queries so no frames are involved.

- the stage: Spark tasks (``limits.tasks`` 2) of ``limits.concurrency`` threads each, one wave,
  replies committed to Delta, pairs parsed and written as samples;
- a plain sequential loop: one ``openai`` client call after the other;
- a Syphus-style thread pool: 64 threads over the requests, as Syphus runs against its
  deployment.

Pairs a second are the pairs of accepted replies (parsed and checked as the stage does) over
the wall time. ``generate_vs_sequential`` and ``generate_vs_threadpool`` are the stage's pairs a
second over each (target for the pool ≥ 0.9); ``generate_rerun_requests`` is what a rerun of
the stage sends, counted in the server's own log (target 0). The server is deterministic
(``--no-cache-prompt``, temperature 0, a seed), so all three get the same replies.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from bench.common import local_spark, timed
from framelake.config import load_config
from framelake.runtime import Context
from jobs.generate import renderer_of, stage
from jobs.stage import run_stage
from tests.support.llm_server import MODEL_NAME, LlamaServer, missing
from udfs.generate.client import make_client
from udfs.generate.loaders import get_loader
from udfs.generate.outcomes import Request, outcome
from udfs.generate.recipe import parse_recipes
from udfs.generate.settings import Endpoint, resolve

QUICK_QUERIES = 24
FULL_QUERIES = 96
SYPHUS_THREADS = 64
MAX_TOKENS = 64
REPO = Path(__file__).resolve().parent.parent
SUBJECTS = ("a red cube", "a blue sphere", "a man", "a dog", "a white car", "two birds", "a green ball", "a boat")
ACTIONS = ("rolls to the left", "stops near the wall", "jumps over a box", "turns around", "enters the frame",
           "leaves to the right", "waits in the centre", "collides with a cylinder")


def write_queries(folder: Path, n: int) -> Path:
    """``n`` dense-caption queries, each its own request."""
    rng = random.Random(5)
    path = folder / "queries.jsonl"
    with path.open("w") as out:
        for i in range(n):
            spans = [{"start": 2 * k, "end": 2 * k + 2, "caption": f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)}."}
                     for k in range(3)]
            out.write(json.dumps({"id": f"q{i:04d}", "annotations": {"dense_captions": spans}}) + "\n")
    return path


def recipe_section(queries: Path) -> dict:
    raw = yaml.safe_load((REPO / "conf" / "recipes" / "mimicit_dc.yaml").read_text())
    raw.pop("profile")
    return {**raw, "pairs": 2, "queries": {"loader": "file", "path": str(queries)},
            "sampling": {**raw["sampling"], "max_tokens": MAX_TOKENS}}


def pairs_of(recipe, endpoint, queries, replies) -> int:
    """Pairs of the accepted replies, parsed and checked as the stage does."""
    request = Request(None, None, endpoint.model, "{}", endpoint.host)
    total = 0
    for query, reply in zip(queries, replies):
        choice, usage = reply.choices[0], reply.usage
        row = outcome(recipe, query, request, {"reply": choice.message.content, "finish_reason": choice.finish_reason,
                                               "prompt_tokens": usage.prompt_tokens,
                                               "completion_tokens": usage.completion_tokens})
        total += sum(t["role"] == "assistant" for t in row.get("conversations") or [])
    return total


def run(quick: bool = True) -> dict[str, float]:
    reason = missing()
    if reason:
        raise RuntimeError(reason)
    n = QUICK_QUERIES if quick else FULL_QUERIES
    folder = Path(tempfile.mkdtemp(prefix="framelake-bench-generate-"))
    server = LlamaServer(folder)
    os.environ.pop("OPENAI_API_KEY", None)  # the bench server takes none
    try:
        queries_path = write_queries(folder, n)
        section = {"endpoint": {"base_url": server.base_url, "model": MODEL_NAME},
                   "limits": {"tasks": 2, "concurrency": 4}, "wave_size": n, "recipes": [recipe_section(queries_path)]}
        spark = local_spark(cores=2)
        [recipe] = parse_recipes(section["recipes"][0], "bench")
        endpoint = resolve(Endpoint(base_url=server.base_url, model=MODEL_NAME), {})
        renderer = renderer_of(recipe, endpoint)
        queries = list(get_loader("file").load(recipe.queries.options, lambda p: open(p, "rb")))
        prompts = [renderer.render(q) for q in queries]
        client = make_client(endpoint)

        def ask(prompt):
            return client.chat.completions.create(messages=prompt.messages, **prompt.params)

        ask(prompts[0])  # the model in memory
        times: dict[str, float] = {}
        with timed("sequential", times):
            sequential = [ask(p) for p in prompts]
        with timed("syphus_threadpool", times):
            with ThreadPoolExecutor(SYPHUS_THREADS) as pool:
                pooled = list(pool.map(ask, prompts))
        warm = load_config("conf/local.yaml", overrides={"lake": str(folder / "warm"), "generate": {
            **section, "recipes": [{**section["recipes"][0], "name": "warm"}]}})
        run_stage(stage, Context.create(warm, spark), echo=lambda line: None)  # Python workers up
        config = load_config("conf/local.yaml", overrides={"lake": str(folder / "lake"), "generate": section})
        ctx = Context.create(config, spark)
        with timed("stage", times):
            result = run_stage(stage, ctx, echo=lambda line: None).details["recipes"][recipe.name]
        before = server.requests_received()
        run_stage(stage, ctx, echo=lambda line: None)
        rerun_requests = server.requests_received() - before
        spark.stop()
    finally:
        server.stop()
    rates = {"stage": result["pairs"] / times["stage"],
             "sequential": pairs_of(recipe, endpoint, queries, sequential) / times["sequential"],
             "syphus_threadpool": pairs_of(recipe, endpoint, queries, pooled) / times["syphus_threadpool"]}
    print(f"   pairs/s: {', '.join(f'{k} {v:.2f}' for k, v in rates.items())} ({n} requests, {result['pairs']} pairs)")
    return {
        "generate_pairs_per_s": rates["stage"],
        "generate_vs_sequential": rates["stage"] / rates["sequential"],
        "generate_vs_threadpool": rates["stage"] / rates["syphus_threadpool"],
        "generate_rerun_requests": float(rerun_requests),
    }


if __name__ == "__main__":
    started = time.time()
    print(run(quick=True), f"{time.time() - started:.0f} s")
