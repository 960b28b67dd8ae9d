"""Queries to requests: the loaders, the rendered prompt, the request key (what changes it and
what does not), and the rate limiter and backoff that pace the requests."""
from __future__ import annotations

import io
import json
import random
from pathlib import Path

import yaml

from tests.support.paths import REPO
from tests.support.samples import video
from udfs.generate.client import retry_after_s, retry_delay_s
from udfs.generate.keys import prompt_hash, request_key
from udfs.generate.loaders import get_loader
from udfs.generate.loaders.samples import queries_of_samples
from udfs.generate.prompt import estimate_tokens, render
from udfs.generate.ratelimit import RateLimiter
from udfs.generate.recipe import parse_recipes

DC = yaml.safe_load((REPO / "conf" / "recipes" / "mimicit_dc.yaml").read_text())


def open_local(path: str, offset: int = 0):
    return open(path, "rb")


def dc_recipe(**changes):
    return parse_recipes({**{k: v for k, v in DC.items() if k != "profile"}, **changes}, "r")[0]


def test_the_file_loader_reads_media_and_annotations_and_keeps_bad_records_as_problems():
    recipe = dc_recipe()
    queries = list(get_loader("file").load(recipe.queries.options, open_local))
    by_id = {q.query_id: q for q in queries}
    clip = by_id["webvid_0001"].media[0]
    assert (clip["kind"], clip["start_s"], clip["end_s"]) == ("video", 0.0, 4.0)
    assert clip["uri"] == str(REPO / "demo" / "media" / "videos" / "webvid_0001.mp4")
    assert by_id["no_media"].media == [] and by_id["clevrer_0002"].annotations["dense_captions"][1]["end"] == 6
    assert [q.problem for q in queries if q.problem] == [
        "query record 5: invalid JSON line: Expecting value (offset 0)"]


def test_the_prompt_is_system_in_context_and_the_rendered_template():
    recipe = dc_recipe()
    query = next(q for q in get_loader("file").load(recipe.queries.options, open_local) if q.query_id == "clevrer_0002")
    prompt = render(recipe, query, "smollm2")
    assert [m["role"] for m in prompt.messages] == ["system", "user", "assistant", "user"]
    assert prompt.messages[-1]["content"] == ("0s-2s: A colourful fractal fills the frame.\n"
                                              "2s-6s: The camera zooms slowly into the fractal's edge.\n"
                                              "Write 3 question-answer pairs.")
    assert prompt.params == {"model": "smollm2", "temperature": 0.0, "top_p": 1.0, "max_tokens": 200, "seed": 7,
                             "presence_penalty": 0.0, "frequency_penalty": 0.0}
    assert estimate_tokens(prompt.messages) > 100


def test_the_request_key_changes_with_model_messages_sampling_and_version_only():
    query = next(get_loader("file").load(dc_recipe().queries.options, open_local))
    key = request_key(render(dc_recipe(), query, "m"), 1)
    assert key == request_key(render(dc_recipe(), query, "m"), 1)
    assert key == request_key(render(dc_recipe(parser="syphus", min_pairs=1), query, "m"), 1)
    changed = [request_key(render(dc_recipe(), query, "other"), 1), request_key(render(dc_recipe(), query, "m"), 2),
               request_key(render(dc_recipe(sampling={"seed": 8}), query, "m"), 1),
               request_key(render(dc_recipe(system="Be terse."), query, "m"), 1),
               request_key(render(dc_recipe(parser="json"), query, "m"), 1)]  # its response_format
    assert len({key, *changed}) == 6
    assert render(dc_recipe(parser="json"), query, "m", response_format=False).params == render(
        dc_recipe(), query, "m").params
    assert prompt_hash(render(dc_recipe(), query, "m").messages) == prompt_hash(
        render(dc_recipe(), query, "other").messages)


def test_samples_queries_are_the_flagged_ones_once_per_language():
    refused, fine = video("a", answers=("Sorry, I cannot see it.",)), video("b")
    assert [q.query_id for q in queries_of_samples([refused, fine], ["refusal"])] == [refused["sample_id"]]
    translated = list(queries_of_samples([fine], languages=["zh", "fr"]))
    assert [(q.query_id, q.lang) for q in translated] == [(f"{fine['sample_id']}:zh", "zh"),
                                                          (f"{fine['sample_id']}:fr", "fr")]
    translate = parse_recipes({"name": "t", "kind": "translate", "queries": {"loader": "samples"},
                               "languages": ["zh"]}, "t")[0]
    prompt = render(translate, translated[0], "m")
    assert "Chinese" in prompt.messages[0]["content"]
    assert json.loads(prompt.messages[-1]["content"])["pairs"][0]["question"] == fine["conversations"][0]["content"]
    schema = prompt.params["response_format"]["json_schema"]["schema"]["properties"]["pairs"]
    assert schema["minItems"] == schema["maxItems"] == 1


def test_a_syphus_style_loader_registered_in_python_gives_queries_and_prefix(tmp_path):
    path = tmp_path / "sentences.json"
    path.write_text(json.dumps({"img1": "A cat sleeps.", "img2": "Two boats sail."}))
    recipe = parse_recipes({"name": "s", "system": "unused", "template": "sentences: {{ annotations.sentences }}",
                            "queries": {"loader": "syphus_sentences", "module": "tests.support.syphus_loader",
                                        "path": str(path)}}, "s")[0]
    loader = get_loader(recipe.queries.loader)
    queries = list(loader.load(recipe.queries.options, lambda p: io.BytesIO(Path(p).read_bytes())))
    prompt = render(recipe, queries[1], "m", prefix=loader.prefix(recipe.queries.options))
    assert prompt.messages[0]["content"].startswith("You are an AI assistant that writes questions")
    assert prompt.messages[-1]["content"] == "sentences: Two boats sail." and len(prompt.messages) == 4


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_rate_limiter_keeps_requests_and_tokens_per_minute():
    clock = FakeClock()
    limiter = RateLimiter(60, None, clock, clock.sleep)  # a burst of 10, then one a second
    for _ in range(30):
        limiter.acquire(1)
    assert 19 <= clock.now <= 21
    clock = FakeClock()
    limiter = RateLimiter(None, 6000, clock, clock.sleep)  # a burst of 1000 tokens, then 100 a second
    for _ in range(11):
        limiter.acquire(500)
    assert 44 <= clock.now <= 46
    RateLimiter(None, None).acquire(10**9)  # no limits: never waits


def test_backoff_has_jitter_and_honours_retry_after():
    rng = random.Random(0)
    delays = [retry_delay_s(attempt, None, 1.0, 8.0, rng) for attempt in (1, 2, 3, 4, 5, 6)]
    assert all(0 <= d <= min(8.0, 2 ** (k)) for k, d in enumerate(delays))
    assert len(set(delays)) == len(delays)
    assert 5.0 <= retry_delay_s(1, 5.0, 1.0, 60.0, rng) <= 6.0
    assert retry_delay_s(1, 500.0, 1.0, 60.0, rng) <= 61.0  # capped
    assert retry_after_s({"retry-after": "3"}) == 3.0 and retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({}) is None
