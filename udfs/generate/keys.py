"""The key of a request, by which its stored reply is found: a hash of the endpoint's model,
the messages, the sampling parameters (with the response format) and the recipe's version.
Any change to one of them is another request; nothing else (the parser, the checks, the
endpoint's address) is."""
from __future__ import annotations

import hashlib

from udfs.generate.prompt import Prompt, canonical


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def prompt_hash(messages: list[dict]) -> str:
    return _digest("prompt", canonical(messages))


def request_key(prompt: Prompt, recipe_version: int) -> str:
    """``prompt.params`` holds the model and the sampling parameters."""
    return _digest("request", canonical(prompt.params), canonical(prompt.messages), str(recipe_version))
