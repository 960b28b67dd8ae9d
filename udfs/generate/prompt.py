"""A query to the chat messages and parameters of its request.

The messages are the recipe's system message, its in-context turns (Syphus's examples), then
one user turn: the recipe's template rendered with the query. The template sees ``id``,
``annotations``, ``media`` (the media rows), ``pairs`` (how many to write), and for a query
that is a sample its ``conversations``, its pairs as ``pairs_text`` (Syphus's form) and
``pairs_json``, and a translation's target ``lang`` and ``language``.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

from jinja2 import TemplateError

from udfs.generate.loaders import Query
from udfs.generate.parsers import Pair, get_parser
from udfs.generate.parsers.json_pairs import pairs_json
from udfs.generate.parsers.syphus import syphus_text
from udfs.generate.recipe import Recipe, compiled
from udfs.sample import RejectError


@dataclass(frozen=True)
class Prompt:
    messages: list[dict]
    params: dict  # sampling parameters, and response_format when asked for


def sample_pairs(conversations: list[dict]) -> tuple[list[dict], list[Pair]]:
    """A conversation's system turns and its (user, assistant) pairs, in order."""
    system = [t for t in conversations if t["role"] == "system"]
    body = [t for t in conversations if t["role"] != "system"]
    if not body or len(body) % 2 or any(t["role"] != ("user", "assistant")[k % 2] for k, t in enumerate(body)):
        raise RejectError("not made of (user, assistant) pairs")
    return system, [(body[k]["content"], body[k + 1]["content"]) for k in range(0, len(body), 2)]


def expected_pairs(recipe: Recipe, query: Query) -> tuple[int, int]:
    """(fewest, most) pairs a reply must hold: a translation, or a rewrite of answers or
    instructions, as many as the sample has."""
    if recipe.kind == "translate" or (recipe.kind == "rewrite" and recipe.rewrite != "conversation"):
        n = len(sample_pairs(query.sample["conversations"])[1])
        return n, n
    return recipe.min_pairs, recipe.pairs


def template_context(recipe: Recipe, query: Query) -> dict:
    context = {"id": query.query_id, "annotations": query.annotations, "media": query.media,
               "pairs": recipe.pairs, "lang": query.lang,
               "language": dict(recipe.languages)[query.lang].name if query.lang else None}
    if query.sample is not None:
        pairs = sample_pairs(query.sample["conversations"])[1]
        context.update(conversations=query.sample["conversations"], pairs_text=syphus_text(pairs),
                       pairs_json=pairs_json(pairs))
    return context


def render(recipe: Recipe, query: Query, model: str, response_format: bool = True,
           prefix: tuple[str | None, list[dict] | None] = (None, None)) -> Prompt:
    """The request of ``query``; ``response_format``: whether the endpoint takes one;
    ``prefix``: a loader's system message and in-context turns, in place of the recipe's.
    Raises ``RejectError`` when the query cannot be rendered."""
    system, in_context = prefix
    context = template_context(recipe, query)
    try:
        system_text = compiled(system or recipe.system).render(context)
        user_text = compiled(recipe.template).render(context)
    except TemplateError as err:
        raise RejectError(f"template: {type(err).__name__}: {err}") from None
    messages = [{"role": "system", "content": system_text}, *(in_context or recipe.in_context),
                {"role": "user", "content": user_text}]
    params = {"model": model, **recipe.sampling.params()}
    schema = get_parser(recipe.parser).response_format(*expected_pairs(recipe, query))
    if response_format and schema is not None:
        params["response_format"] = schema
    return Prompt(messages, params)


def estimate_tokens(messages: list[dict]) -> int:
    """Prompt tokens without a tokenizer: about 4 characters a token, and a few a message."""
    return sum(math.ceil(len(m["content"]) / 4) + 4 for m in messages) + 3


def count_tokens(messages: list[dict], profile) -> int:
    """Prompt tokens as the model ``profile`` names them: its tokenizer on its chat template."""
    from udfs.token_lengths import render_text
    from udfs.tokenizers import load_counter

    counter = load_counter(profile.tokenizer)
    return counter.count([render_text(messages, profile, counter)], add_special_tokens=False)[0]


def show(messages: list[dict]) -> str:
    """Messages for a person to read (``framelake generate --preview``)."""
    return "\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
