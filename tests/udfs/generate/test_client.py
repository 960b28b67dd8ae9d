"""One request against the real llama-server (``llm_server``): replies with usage, seeds that
repeat, the JSON schema held to, and, through the fault proxy, 429 with Retry-After, 500,
resets and slow replies retried, errors that are not retried and quote no key."""
from __future__ import annotations

import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import LLM_API_KEY
from tests.support.faultproxy import FaultProxy
from tests.support.llm_server import MODEL_NAME
from udfs.generate.client import RequestFailed, make_client, send
from udfs.generate.parsers import get_parser
from udfs.generate.prompt import Prompt
from udfs.generate.ratelimit import RateLimiter
from udfs.generate.settings import Endpoint, resolve

QUESTION = [{"role": "user", "content": "Name one colour of a traffic light."}]
PARAMS = {"model": MODEL_NAME, "temperature": 0.0, "seed": 3, "max_tokens": 16}


def endpoint(base_url: str, key: str = LLM_API_KEY, **settings):
    return resolve(Endpoint(base_url=base_url, model=MODEL_NAME, backoff_s=0.2, max_backoff_s=3.0, **settings),
                   {"OPENAI_API_KEY": key})


def ask(ep, prompt: Prompt = Prompt(QUESTION, PARAMS)):
    return send(make_client(ep), ep, prompt, RateLimiter(None, None), 50, random.Random(0))


def test_a_reply_with_usage_and_the_same_reply_for_the_same_seed_also_concurrently(llm_server):
    ep = endpoint(llm_server.base_url)
    first = ask(ep)
    assert first.reply and first.finish_reason in ("stop", "length") and first.attempts == 1
    assert first.prompt_tokens > 5 and 0 < first.completion_tokens <= 16
    with ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: ask(ep).reply, range(4)))
    assert replies == [first.reply] * 4


def test_the_json_schema_is_held_to(llm_server):
    parser = get_parser("json")
    prompt = Prompt([{"role": "user", "content": "Write one question and answer about a red ball, as JSON."}],
                    {**PARAMS, "max_tokens": 80, "response_format": parser.response_format(1, 1)})
    reply = ask(endpoint(llm_server.base_url), prompt)
    assert reply.finish_reason == "stop"
    assert len(parser.parse(reply.reply)) == 1


def test_a_wrong_key_fails_at_once_and_its_error_quotes_no_key(llm_server):
    wrong = "sk-wrong-key-0123456789"
    with pytest.raises(RequestFailed) as err:
        ask(endpoint(llm_server.base_url, key=wrong))
    assert err.value.attempts == 1 and str(err.value).startswith("HTTP 401")
    assert wrong not in str(err.value) and LLM_API_KEY not in str(err.value)


@pytest.mark.parametrize("fault", ["429-before", "500-before", "reset-before", "500-after", "reset-after", "slow"])
def test_faults_are_retried_to_the_same_reply(llm_server, fault):
    reference = ask(endpoint(llm_server.base_url)).reply
    with FaultProxy(llm_server.url, errors="json", retry_after_s=1.5, slow_s=(4.0, 4.0),
                    script=(fault,)) as proxy:
        started = time.monotonic()
        reply = ask(endpoint(proxy.url + "/v1", timeout_s=2.0))
        elapsed = time.monotonic() - started
    assert reply.reply == reference and reply.attempts == 2 and proxy.injected[fault] == 1
    if fault == "429-before":
        assert elapsed >= 1.5  # Retry-After honoured
    if fault == "slow":
        assert elapsed >= 2.0  # the first attempt timed out


def test_a_request_that_keeps_failing_gives_up_after_max_attempts(llm_server):
    with FaultProxy(llm_server.url, errors="json", script=("500-before",) * 3) as proxy:
        with pytest.raises(RequestFailed, match=r"HTTP 500: .* \(attempt 3 of 3\)") as err:
            ask(endpoint(proxy.url + "/v1", max_attempts=3))
    assert err.value.attempts == 3 and proxy.requests == 3
