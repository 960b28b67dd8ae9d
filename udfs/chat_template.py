"""Chat-template rendering at scale: Jinja once per shape of conversation, not once per sample.

Rendering a template with Jinja costs hundreds of microseconds, more than counting the tokens
of the result. Conversations with the same sequence of roles render to the same text around
their contents, so ``SkeletonRenderer`` renders each role sequence once with sentinel contents,
learns the text between them (and whether the template trims contents), and fills that skeleton
for later conversations. The first conversation of each shape is also rendered by Jinja and
compared: a template the skeleton cannot reproduce (one that looks at content, say) falls back
to Jinja for that shape, so the output always equals the template's own.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

Messages = Sequence[dict]
# Private-use code points: never in real text, never trimmed, kept by every template we know.
_SENTINEL = "\ue000{}\ue001"
_SENTINELS = re.compile("\ue000(\\d+)\ue001")


@dataclass(frozen=True)
class _Skeleton:
    pieces: tuple[str, ...]  # text before content 0, between contents, and after the last
    trims: bool  # the template strips whitespace around contents (Llama 3's ``| trim``)

    def fill(self, messages: Messages) -> str:
        out = [self.pieces[0]]
        for message, piece in zip(messages, self.pieces[1:]):
            out.append(message["content"].strip() if self.trims else message["content"])
            out.append(piece)
        return "".join(out)


class SkeletonRenderer:
    """A drop-in for ``render(messages) -> str`` that caches the template per role sequence."""

    def __init__(self, render: Callable[[list[dict]], str]):
        self.render = render
        self._skeletons: dict[tuple[str, ...], _Skeleton | None] = {}

    def __call__(self, messages: Messages) -> str:
        roles = tuple(m["role"] for m in messages)
        if roles in self._skeletons:
            skeleton = self._skeletons[roles]
            return self.render(list(messages)) if skeleton is None else skeleton.fill(messages)
        exact = self.render(list(messages))
        skeleton = self._learn(roles)
        self._skeletons[roles] = skeleton if skeleton is not None and skeleton.fill(messages) == exact else None
        return exact

    def _learn(self, roles: tuple[str, ...]) -> _Skeleton | None:
        """The skeleton of a role sequence, or None if the template does not render contents
        verbatim, once each and in order."""
        padded = [{"role": role, "content": f" {_SENTINEL.format(i)} "} for i, role in enumerate(roles)]
        text = self.render(padded)
        found = [int(m.group(1)) for m in _SENTINELS.finditer(text)]
        if found != list(range(len(roles))):
            return None
        kept = [f" {_SENTINEL.format(i)} " in text for i in range(len(roles))]
        if len(set(kept)) != 1:
            return None
        trims = not kept[0]
        # Split on the sentinel as the template wrote it: padded when kept, bare when trimmed.
        pieces = _SENTINELS.split(text)[::2] if trims else re.split(" \ue000\\d+\ue001 ", text)
        return _Skeleton(pieces=tuple(pieces), trims=trims)
