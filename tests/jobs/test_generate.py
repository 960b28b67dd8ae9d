"""The generate stage against the real llama-server: MIMIC-IT's dense-caption recipe and its
translation, reruns that send nothing, recipe changes that send only what changed, budgets,
the dry run and the preview, and a rewrite that the tokens and shards stages then use."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from pyspark.sql import functions as F

from framelake.runtime import Context
from jobs.generate import dry_run, renderer_of, stage
from jobs.pipeline import run_stages
from jobs.stage import run_stage
from tests.conftest import LLM_API_KEY
from tests.support.config import demo_config, write_config
from tests.support.generate import conf_recipe, generate_section, generated, small_dc
from tests.support.paths import REPO
from udfs.generate.loaders import get_loader
from udfs.generate.prompt import count_tokens
from udfs.generate.settings import resolve

DENSE_CAPTIONS = REPO / "demo" / "annotations" / "generate" / "dense_captions.jsonl"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", LLM_API_KEY)


def run(ctx):
    """The generate stage's per-recipe counts."""
    return run_stage(stage, ctx, echo=lambda line: None).details["recipes"]


def context(spark, lake, server, recipes, **section):
    return Context.create(demo_config(str(lake), generate=generate_section(server.url, recipes, **section)), spark)


@pytest.fixture(scope="module")
def captions(tmp_path_factory):
    """A copy of the demo's dense captions, which a test changes."""
    path = tmp_path_factory.mktemp("queries") / "dense_captions.jsonl"
    shutil.copy(DENSE_CAPTIONS, path)
    return path


def dc_with_translation(captions):
    queries = {"loader": "file", "path": str(captions), "media_root": str(REPO / "demo" / "media")}
    return small_dc(queries=queries, translate={"languages": ["zh"], "sampling": {"max_tokens": 160}})


@pytest.fixture(scope="module")
def first_run(spark, llm_server, captions, tmp_path_factory):
    """(context, counts, requests the server received) of one run on a new lake."""
    before = llm_server.requests_received()
    os.environ["OPENAI_API_KEY"] = LLM_API_KEY  # the module fixture runs before the autouse one
    ctx = context(spark, tmp_path_factory.mktemp("generate") / "lake", llm_server, [dc_with_translation(captions)])
    counts = run(ctx)
    return ctx, counts, llm_server.requests_received() - before


def test_queries_become_samples_or_rejects_with_lineage_and_raw_replies(first_run):
    ctx, counts, received = first_run
    dc, translate = counts["mimicit_dc"], counts["mimicit_dc.translate"]
    lines = DENSE_CAPTIONS.read_text().splitlines()
    assert dc["queries"] == len(lines) and dc["pending"] == translate["pending"] == 0, counts
    for recipe in (dc, translate):
        assert recipe["queries"] == recipe["samples"] + recipe["rejects"]
    assert translate["queries"] == dc["samples"]  # each sample into each language, here one
    assert dc["sent"] == len(lines) - 1  # the line that is no JSON object is rejected unsent
    assert received == dc["sent"] + translate["sent"] == ctx.lake.info("generations").rows

    tables = generated(ctx.lake)
    samples = {row["sample_id"]: row for row in tables["samples"]}
    lineage = {row["sample_id"]: row for row in tables["lineage"]}
    assert samples.keys() == lineage.keys() and len(samples) == dc["samples"] + translate["samples"]
    stored = {row["request_key"]: row for row in tables["generations"]}
    queries = {json.loads(line)["id"]: json.loads(line) for line in lines if line.startswith("{")}
    for sample_id, row in samples.items():
        line = lineage[sample_id]
        assert line["request_key"] in stored and stored[line["request_key"]]["reply"] == row["raw"]
        assert line["endpoint_host"] == ctx.config.generate.endpoint.base_url.split("/")[2]
        assert json.loads(line["sampling"])["seed"] == 7 and line["prompt_tokens"] > 0
        if row["source"] == "mimicit_dc":
            assert len(row["media"]) == ("media" in queries[line["query_id"]])
            assert row["conversations"][0]["content"].count("<media>") == len(row["media"])
        else:
            assert row["language"] == line["lang"] == "zh" and line["original_sample_id"] in samples
    reasons = [row["reason"] for row in tables["rejects"]]
    assert len(reasons) == dc["rejects"] + translate["rejects"]
    assert [reason for reason in reasons if reason.startswith("query record")] == [
        "query record 5: invalid JSON line: Expecting value (offset 0)"]
    replies = {row["reply"] for row in stored.values()}
    assert all(row["raw"] in replies for row in tables["rejects"] if not row["reason"].startswith("query record"))


def test_a_rerun_sends_nothing_and_writes_the_same_rows(first_run, llm_server):
    ctx, _, _ = first_run
    before, tables = llm_server.requests_received(), generated(ctx.lake)
    counts = run(ctx)
    assert llm_server.requests_received() == before
    assert all(recipe["sent"] == 0 for recipe in counts.values())
    assert generated(ctx.lake) == tables


def test_a_dry_run_counts_the_prompt_tokens_with_the_recipes_tokenizer(first_run, spark, llm_server, tmp_path):
    ctx, _, _ = first_run
    recipe = ctx.config.generate.recipes[0]
    assert dry_run(ctx, recipe)["requests"] == 0  # all stored
    fresh = context(spark, tmp_path / "lake", llm_server, [dc_with_translation(DENSE_CAPTIONS)])
    before = llm_server.requests_received()
    counts = dry_run(fresh, recipe)
    renderer = renderer_of(recipe, resolve(ctx.config.generate.endpoint, os.environ))
    loaded = get_loader("file").load(recipe.queries.options, lambda path: open(path, "rb"))
    queries = [q for q in loaded if not q.problem]
    assert counts["requests"] == len(queries) and counts["prompt_tokens_are"] == "counted"
    assert counts["prompt_tokens"] == sum(count_tokens(renderer.render(q).messages, recipe.profile) for q in queries)
    assert counts["max_completion_tokens"] == len(queries) * recipe.sampling.max_tokens
    assert llm_server.requests_received() == before and not fresh.lake.exists("generations")


def test_a_changed_query_sends_only_its_requests(first_run, llm_server, captions):
    ctx, _, _ = first_run
    lines = captions.read_text().splitlines()
    changed = json.loads(lines[2])
    changed["annotations"]["dense_captions"][0]["caption"] = "A spinning wheel and a counter on a test card."
    added = {"id": "added", "media": "videos/v_demo0002.mp4",
             "annotations": {"dense_captions": [{"start": 0, "end": 4, "caption": "Colour bars stand still."}]}}
    captions.write_text("\n".join([*lines[:2], json.dumps(changed), *lines[3:], json.dumps(added)]) + "\n")
    keys_before = set(r["request_key"] for r in generated(ctx.lake)["generations"])
    before = llm_server.requests_received()
    counts = run(ctx)
    assert counts["mimicit_dc"]["sent"] == 2 and counts["mimicit_dc"]["queries"] == len(lines) + 1
    assert llm_server.requests_received() - before == counts["mimicit_dc"]["sent"] + \
        counts["mimicit_dc.translate"]["sent"]
    assert keys_before < set(r["request_key"] for r in generated(ctx.lake)["generations"])
    samples = {r["sample_id"] for r in generated(ctx.lake)["samples"]}
    assert samples == set(r["sample_id"] for r in generated(ctx.lake)["lineage"])  # the replaced ones are gone


def test_a_budget_stops_cleanly_and_the_same_seeds_give_the_same_pairs(spark, llm_server, tmp_path):
    (tmp_path / "queries.jsonl").write_text("".join(DENSE_CAPTIONS.read_text().splitlines(True)[:3]))
    recipe = small_dc(queries={"loader": "file", "path": str(tmp_path / "queries.jsonl"),
                               "media_root": str(REPO / "demo" / "media")})
    stopped = context(spark, tmp_path / "lake", llm_server, [recipe], limits={"max_requests": 2})
    counts = run(stopped)["mimicit_dc"]
    assert counts["sent"] == 2 and counts["pending"] == counts["queries"] - counts["samples"] - counts["rejects"] > 0
    assert stopped.lake.info("generations").rows == 2
    before = llm_server.requests_received()
    finished = context(spark, tmp_path / "lake", llm_server, [recipe])
    rest = run(finished)["mimicit_dc"]
    assert rest["pending"] == 0 and rest["sent"] == counts["pending"]
    assert llm_server.requests_received() - before == rest["sent"]

    again = context(spark, tmp_path / "again", llm_server, [recipe])  # another lake, every request again
    run(again)
    assert generated(again.lake) == generated(finished.lake)


def test_the_preview_prints_prompt_reply_and_pairs_and_writes_nothing(llm_server, tmp_path):
    lake = tmp_path / "lake"
    config = write_config(tmp_path, lake=str(lake), generate=generate_section(llm_server.url, []))
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    before = llm_server.requests_received()
    result = subprocess.run([sys.executable, "-m", "framelake.cli", "generate", "--config", config, "--recipe",
                             "conf/recipes/mimicit_dc.yaml", "--preview", "2"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert out.count("=== mimicit_dc query") == 2 and out.count("--- prompt") == 2
    assert out.count("--- raw reply") == 2 and out.count("--- parsed") + out.count("--- reject") == 2
    assert "[system]\nYou are an AI visual assistant" in out and "0s-3s: A test card" in out
    assert llm_server.requests_received() - before == 2
    assert not (lake / "tables").exists()


def test_a_rewrite_replaces_refusals_in_tokens_and_shards(spark, llm_server, tmp_path):
    records = [{"video": "videos/v_demo0001.mp4", "QA": [{"q": "What is on the screen?",
                                                         "a": "Sorry, I cannot see the video."}]},
               {"video": "videos/v_demo0001.mp4", "QA": [{"q": "Is there a counter?", "a": "Yes, one."}]}]
    (tmp_path / "clips.json").write_text(json.dumps(records))
    source = {"name": "clips", "format": "videochat2", "annotations": str(tmp_path / "clips.json"),
              "media_root": str(REPO / "demo" / "media"), "media_type": "video"}
    rewrite = conf_recipe("rewrite_refusals", queries={"loader": "samples", "sources": ["clips"],
                                                       "flagged_by": ["refusal"]})
    translate = {"name": "clips_fr", "kind": "translate", "queries": {"loader": "samples", "sources": ["clips"]},
                 "languages": ["fr"], "sampling": {"max_tokens": 120}}
    config = demo_config(str(tmp_path / "lake"), sources=[source],
                         generate=generate_section(llm_server.url, [rewrite, translate]))
    ctx = Context.create(config, spark)
    results = {r.stage: r for r in run_stages(ctx, echo=lambda line: None)}
    assert list(results) == ["normalize", "generate", "frames", "tokens", "shards"]
    counts = results["generate"].details["recipes"]
    assert counts["rewrite_refusals"]["queries"] == 1 and counts["clips_fr"]["queries"] == 2

    samples = {r["sample_id"]: r for r in ctx.lake.read_arrow("samples").to_pylist()}
    lineage = {r["sample_id"]: r for r in ctx.lake.read_arrow("lineage").to_pylist()}
    [original] = [s for s in samples.values() if "Sorry" in s["conversations"][1]["content"]]
    [other] = [s for s in samples.values() if "counter" in s["conversations"][0]["content"]]
    [rewritten] = [sid for sid, row in lineage.items() if row["kind"] == "rewrite"]
    assert lineage[rewritten]["original_sample_id"] == original["sample_id"]
    assert samples[rewritten]["source"] == "clips" and samples[rewritten]["media"] == original["media"]
    assert samples[rewritten]["conversations"][0] == original["conversations"][0]  # the question kept
    assert "Sorry" not in samples[rewritten]["conversations"][1]["content"]
    model = config.models[0].name
    kept = {r["sample_id"]: (r["kept"], r["reason"])
            for r in ctx.lake.read("token_lengths").where(F.col("model") == model).collect()}
    assert kept.keys() == samples.keys()  # kept + dropped = samples
    assert kept[original["sample_id"]] == (False, f"rewritten by recipe rewrite_refusals as {rewritten}")
    assert kept[rewritten] == (True, None) and kept[other["sample_id"]] == (True, None)
    # The translation read the new version in place of the original.
    translated = {r["query_id"] for r in ctx.lake.read_arrow("generations").to_pylist() if r["recipe"] == "clips_fr"}
    assert translated == {f"{rewritten}:fr", f"{other['sample_id']}:fr"}
    shards = ctx.lake.read_arrow("shards").to_pylist()
    assert sum(r["samples"] for r in shards if (r["model"], r["format"]) == (model, "llava")) == sum(
        k for k, _ in kept.values())
    [llava] = [r["shard_path"] for r in shards if (r["model"], r["format"]) == (model, "llava")]
    assert samples[rewritten]["conversations"][1]["content"] in open(llava).read()
