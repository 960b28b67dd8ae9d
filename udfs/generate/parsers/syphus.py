"""``syphus``: the text Syphus asks its LLM for, pairs as "Question: ..." then "Answer: ...",
one after the other; a label may be numbered or bold ("**Question 2:**"), the text after it
runs to the next label. Text before the first question is the model's preamble, dropped."""
from __future__ import annotations

import re

from udfs.generate.parsers import Pair, ParseError, Parser, register_parser

LABEL = re.compile(r"^[ \t]*(?:[-*#>]+[ \t]*)*\**[ \t]*(question|answer)[ \t]*\d*[ \t]*\**[ \t]*[:：][ \t]*\**",
                   re.IGNORECASE | re.MULTILINE)


@register_parser("syphus")
class SyphusParser(Parser):
    def parse(self, reply: str) -> list[Pair]:
        labels = list(LABEL.finditer(reply))
        parts = [(m.group(1).lower(), reply[m.end(): nxt.start() if nxt else len(reply)].strip())
                 for m, nxt in zip(labels, labels[1:] + [None])]
        pairs, question = [], None
        for label, text in parts:
            if label == "question":
                question = text
            elif question is not None:
                pairs.append((question, text))
                question = None
        if not pairs:
            raise ParseError("unparseable reply: no 'Question: ... Answer: ...' pair")
        return pairs


def syphus_text(pairs: list[Pair]) -> str:
    """Pairs in the form this parser reads (how a rewrite's or translation's prompt shows them)."""
    return "\n\n".join(f"Question: {q}\nAnswer: {a}" for q, a in pairs)
