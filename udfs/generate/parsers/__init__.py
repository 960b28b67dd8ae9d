"""Reply parsers: a reply's text to instruction-response pairs, registered by name.

A parser is a class with ``parse(reply) -> list[(question, answer)]``, raising ``ParseError``
with the reason when the reply holds none, and ``response_format(min_pairs, max_pairs)``: what
the request asks of the server's output (None: nothing), used where the endpoint supports it.
Built in: ``syphus`` (its "Question: ... Answer: ..." text) and ``json``.
"""
from __future__ import annotations

from typing import ClassVar

from udfs.registry import Registry

Pair = tuple[str, str]


class ParseError(ValueError):
    """A reply that holds no pairs; the message is the reject's reason."""


class Parser:
    name: ClassVar[str]

    def parse(self, reply: str) -> list[Pair]:
        raise NotImplementedError

    def response_format(self, min_pairs: int, max_pairs: int) -> dict | None:
        return None


# Importing ``udfs.generate.parsers.builtin`` registers the built-in parsers.
PARSERS: Registry[type[Parser]] = Registry("reply parser", "udfs.generate.parsers.builtin")
register_parser = PARSERS.register


def get_parser(name: str) -> Parser:
    return PARSERS.get(name)()
