"""``json``: a JSON object ``{"pairs": [{"question": ..., "answer": ...}, ...]}`` (or the list
alone). With the endpoint's ``response_format`` the server is held to that schema (llama.cpp's
grammar, OpenAI's structured outputs); without, the first JSON value in the reply is read."""
from __future__ import annotations

import json
from typing import Any

from udfs.generate.parsers import Pair, ParseError, Parser, register_parser


@register_parser("json")
class JsonParser(Parser):
    def parse(self, reply: str) -> list[Pair]:
        value = first_json(reply)
        items = value.get("pairs") if isinstance(value, dict) else value
        if not isinstance(items, list) or not items:
            raise ParseError("unparseable reply: no list of pairs in the JSON")
        pairs = []
        for k, item in enumerate(items):
            if not (isinstance(item, dict) and isinstance(item.get("question"), str)
                    and isinstance(item.get("answer"), str)):
                raise ParseError(f"unparseable reply: pairs[{k}] is not a {{question, answer}} object")
            pairs.append((item["question"], item["answer"]))
        return pairs

    def response_format(self, min_pairs: int, max_pairs: int) -> dict:
        pair = {"type": "object", "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
                "required": ["question", "answer"], "additionalProperties": False}
        schema = {"type": "object", "required": ["pairs"], "additionalProperties": False,
                  "properties": {"pairs": {"type": "array", "items": pair, "minItems": min_pairs,
                                           "maxItems": max_pairs}}}
        return {"type": "json_schema", "json_schema": {"name": "pairs", "schema": schema, "strict": True}}


def first_json(reply: str) -> Any:
    """The first JSON object or array in ``reply`` (models wrap it in prose or code fences)."""
    decoder = json.JSONDecoder()
    for start, char in enumerate(reply):
        if char in "{[":
            try:
                return decoder.raw_decode(reply, start)[0]
            except json.JSONDecodeError:
                continue
    raise ParseError("unparseable reply: no JSON object in it")


def pairs_json(pairs: list[Pair]) -> str:
    """Pairs as this parser reads them (how a rewrite's or translation's prompt shows them)."""
    return json.dumps({"pairs": [{"question": q, "answer": a} for q, a in pairs]}, ensure_ascii=False)
