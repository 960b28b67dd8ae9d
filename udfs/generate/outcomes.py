"""A query and its stored reply to what the generate stage writes: a sample row (with its
lineage row) or a reject row with the raw reply, never an exception. Every query gets one
outcome: ``sample``, ``reject``, or ``pending`` (no reply yet: a budget stopped the run), so
queries = samples + rejects + pending."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from udfs.adapters.common import with_media_prefix
from udfs.generate.checks import pairs_problem, reply_problem, translation_problem
from udfs.generate.loaders import Query
from udfs.generate.parsers import Pair, ParseError, get_parser
from udfs.generate.prompt import expected_pairs, sample_pairs
from udfs.generate.recipe import Recipe
from udfs.normalize import RAW_LIMIT, REASON_LIMIT, truncate_utf8
from udfs.sample import MEDIA_TOKEN, RejectError, make_sample, turn


@dataclass(frozen=True)
class Request:
    """What the stage knows of a query's request (``jobs.generate``'s ``REQUESTS`` row)."""

    request_key: str | None
    prompt_hash: str | None
    model: str
    sampling: str  # JSON of the sampling parameters
    endpoint_host: str
    problem: str | None = None  # the query could not be rendered


def record_index(query_id: str) -> int:
    """A stable number of a query, its rows' ``record_index`` (with ``source_file``, the key of
    ``rejects``): 60 bits of a hash, so collisions are out of reach."""
    return int(hashlib.sha256(query_id.encode("utf-8")).hexdigest()[:15], 16)


def outcome(recipe: Recipe, query: Query, request: Request, generation: dict | None,
            failure: str | None = None) -> dict:
    """The outcome row of one query: ``outcome``, the ``SAMPLES`` and ``LINEAGE`` fields of a
    sample, or ``reason`` and ``raw`` of a reject. ``generation``: its ``GENERATIONS`` row, None
    when no reply is stored; ``failure``: why this run's request failed."""
    reply = generation["reply"] if generation else None
    if query.problem or request.problem:
        return _reject(recipe, query, query.problem or request.problem, "")
    if generation is None:
        if failure:
            return _reject(recipe, query, f"request failed: {failure}", "")
        return {"outcome": "pending", "query_id": query.query_id, "recipe": recipe.name}
    try:
        sample = _sample(recipe, query, generation)
    except (RejectError, ParseError) as err:
        return _reject(recipe, query, str(err), reply)
    sampling = json.loads(request.sampling)
    lineage = {
        "recipe": recipe.name, "kind": recipe.kind, "query_id": query.query_id,
        "original_sample_id": query.sample["sample_id"] if query.sample else None, "lang": query.lang,
        "request_key": request.request_key, "prompt_hash": request.prompt_hash, "model": request.model,
        "endpoint_host": request.endpoint_host, "sampling": json.dumps(sampling, sort_keys=True),
        "recipe_version": recipe.version, "prompt_tokens": generation["prompt_tokens"],
        "completion_tokens": generation["completion_tokens"],
    }
    return {"outcome": "sample", **sample, **lineage}


def _reject(recipe: Recipe, query: Query, reason: str, raw: str | None) -> dict:
    return {"outcome": "reject", "query_id": query.query_id, "recipe": recipe.name, "stage": "generate",
            "source": recipe.name, "format": recipe.output_format, "source_file": f"recipe:{recipe.name}",
            "record_index": record_index(query.query_id), "reason": reason[:REASON_LIMIT],
            "raw": truncate_utf8(raw or "", RAW_LIMIT)}


def _sample(recipe: Recipe, query: Query, generation: dict) -> dict:
    """The sample row of a reply; raises ``RejectError`` or ``ParseError`` with the reason."""
    reply = generation["reply"]
    problem = reply_problem(reply, generation["finish_reason"], recipe.sampling.max_tokens)
    if problem:
        raise RejectError(problem)
    least, most = expected_pairs(recipe, query)
    pairs = get_parser(recipe.parser).parse(reply)[:most]
    if len(pairs) < least:
        raise RejectError(f"{len(pairs)} pairs in the reply, {least} expected")
    if problem := pairs_problem(pairs):
        raise RejectError(problem)
    common = {"fmt": recipe.output_format, "source_file": f"recipe:{recipe.name}",
              "record_index": record_index(query.query_id), "raw": reply}
    if recipe.kind == "generate":
        return make_sample(source=recipe.name, file_key=f"recipe:{recipe.name}", record_key=query.query_id,
                           media=query.media, conversations=_turns(pairs, len(query.media)), **common)
    original = query.sample
    system, old = sample_pairs(original["conversations"])
    n_media = len(original["media"])
    if recipe.kind == "translate":
        code, language = query.lang, dict(recipe.languages)[query.lang]
        if problem := translation_problem(old, pairs, language, recipe.min_script_share):
            raise RejectError(problem)
        return make_sample(source=recipe.name, file_key=f"translate:{code}", record_key=original["sample_id"],
                           media=original["media"], conversations=[*system, *_turns(pairs, 0)],
                           media_type=original["media_type"], in_context=original["in_context"], language=code,
                           **common)
    if recipe.rewrite == "answers":
        pairs = [(q, a) for (q, _), (_, a) in zip(old, pairs)]
        conversations = [*system, *_turns(pairs, 0)]
    else:
        if recipe.rewrite == "instructions":
            pairs = [(q, a) for (q, _), (_, a) in zip(pairs, old)]
        conversations = [*system, *_turns([(q.replace(MEDIA_TOKEN, "").strip(), a) for q, a in pairs], n_media)]
    return make_sample(source=original["source"], file_key=f"rewrite:{recipe.name}",
                       record_key=original["sample_id"], media=original["media"], conversations=conversations,
                       media_type=original["media_type"], in_context=original["in_context"],
                       language=original["language"], **common)


def _turns(pairs: list[Pair], n_media: int) -> list[dict]:
    """User and assistant turns of ``pairs``, ``n_media`` placeholders before the first question."""
    turns = []
    for k, (question, answer) in enumerate(pairs):
        turns += [turn("user", with_media_prefix(question.strip(), n_media) if k == 0 else question.strip()),
                  turn("assistant", answer.strip())]
    return turns
