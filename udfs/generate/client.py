"""One chat completion request, through the official ``openai`` client, made to survive what
endpoints do: 429 and 5xx (and 408/409), resets and timeouts are retried with exponential
backoff and full jitter, waiting at least what ``Retry-After`` asks (up to
``max_backoff_s``); every attempt has the endpoint's timeout and passes the rate limiter.
The client's own retries are off: these count the attempts and keep to the limiter. Other
errors (400, 401, ...) fail the request at once. A failure's message is scrubbed of the key.
"""
from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Callable

from udfs.generate.prompt import Prompt
from udfs.generate.ratelimit import RateLimiter
from udfs.generate.secrets import scrub
from udfs.generate.settings import ResolvedEndpoint

RETRIED_STATUS = (408, 409, 429)


@dataclass(frozen=True)
class Reply:
    reply: str | None
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    attempts: int
    elapsed_s: float


class RequestFailed(Exception):
    """A request that got no reply; the message is scrubbed."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


def make_client(endpoint: ResolvedEndpoint):
    """The ``openai`` client of the endpoint, its own retries off."""
    import openai

    key = endpoint.key.reveal() if endpoint.key else "none"  # a local server without --api-key takes any
    timeout = endpoint.settings.timeout_s
    if endpoint.api_type == "azure":
        return openai.AzureOpenAI(azure_endpoint=endpoint.base_url, api_version=endpoint.api_version, api_key=key,
                                  max_retries=0, timeout=timeout)
    return openai.OpenAI(base_url=endpoint.base_url, api_key=key, max_retries=0, timeout=timeout)


def retry_after_s(headers) -> float | None:
    """What ``Retry-After`` (seconds or an HTTP date) or OpenAI's ``retry-after-ms`` asks for."""
    if headers is None:
        return None
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return float(millis) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, when.timestamp() - time.time()) if when else None


def retry_delay_s(attempt: int, retry_after: float | None, backoff_s: float, max_backoff_s: float,
                  rng: random.Random) -> float:
    """The wait before attempt ``attempt + 1``: full jitter over ``backoff_s * 2^(attempt-1)``
    (capped), and never less than ``Retry-After`` (capped too), plus jitter so that waiting
    clients do not return together."""
    jitter = rng.uniform(0, min(max_backoff_s, backoff_s * 2 ** (attempt - 1)))
    if retry_after is None:
        return jitter
    return min(retry_after, max_backoff_s) + rng.uniform(0, backoff_s)


def send(client, endpoint: ResolvedEndpoint, prompt: Prompt, limiter: RateLimiter, cost: int,
         rng: random.Random, sleep: Callable[[float], None] = time.sleep) -> Reply:
    """The reply of ``prompt``, or ``RequestFailed``. ``cost``: its tokens for the limiter."""
    import openai

    settings = endpoint.settings
    started = time.monotonic()
    for attempt in range(1, settings.max_attempts + 1):
        limiter.acquire(cost)
        try:
            response = client.chat.completions.create(messages=prompt.messages, **prompt.params)
        except openai.APIStatusError as err:
            retried, wait, problem = err.status_code in RETRIED_STATUS or err.status_code >= 500, \
                retry_after_s(err.response.headers), f"HTTP {err.status_code}: {err.message}"
        except openai.APIConnectionError as err:  # resets, refused connections, timeouts
            retried, wait, problem = True, None, f"{type(err).__name__}: {err}"
        else:
            if not response.choices:
                raise RequestFailed("the reply has no choices", attempt)
            choice, usage = response.choices[0], response.usage
            return Reply(choice.message.content, choice.finish_reason, usage and usage.prompt_tokens,
                         usage and usage.completion_tokens, attempt, time.monotonic() - started)
        if not retried or attempt == settings.max_attempts:
            raise RequestFailed(scrub(f"{problem} (attempt {attempt} of {settings.max_attempts})", endpoint.key),
                                attempt)
        sleep(retry_delay_s(attempt, wait, settings.backoff_s, settings.max_backoff_s, rng))
