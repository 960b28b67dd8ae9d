"""The shard-format interface and its registry.

A format is one module of this package: a ``ShardFormat`` subclass registered by name with
``@register_format("name")``. The config's ``shards.formats`` names formats, the tokens stage
drops the samples ``format_problem`` finds one of them cannot express, and the shards job has
each format ``write`` every shard.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, ClassVar, Iterable, Sequence

from udfs.registry import Registry

Frames = Sequence[Sequence[dict]]
ReadFrame = Callable[[dict], bytes]
SampleWithFrames = tuple[dict, Frames]
# (uri) -> a binary file that appears at uri when the block ends without error
OpenWriter = Callable[[str], AbstractContextManager[BinaryIO]]

@dataclass(frozen=True)
class ShardFile:
    """One file written for a shard: what its row of the ``shards`` table needs."""

    uri: str
    samples: int  # the shard's sample count on one of its files, 0 on the others
    bytes: int
    sha256: str


class ShardFormat:
    """Base class: subclasses set ``extension`` and implement ``check`` and ``write``; what a
    format reads from the config comes in through ``from_settings``."""

    name: ClassVar[str]
    # What follows the shard's stem (``shard-00000``) in its name: the file extension, or "" for
    # a format whose ``write`` names several files after the stem.
    extension: ClassVar[str]

    @classmethod
    def from_settings(cls, settings: Any) -> ShardFormat:
        """The format as the config's ``shards`` section (``ShardSettings``) sets it up."""
        return cls()

    def check(self, sample: dict, frames: Frames) -> None:
        """Raises ``ValueError`` with the reason if ``write`` cannot hold the sample."""
        raise NotImplementedError

    def write(
        self, uri: str, samples: Sequence[SampleWithFrames], open_writer: OpenWriter, read_frame: ReadFrame
    ) -> list[ShardFile]:
        """Write one shard at ``uri`` (``shard_name`` under the output root) through
        ``open_writer``; raises ``ValueError`` for a sample that ``check`` refuses."""
        raise NotImplementedError


# Importing ``udfs.shards`` registers the built-in formats, in the order it imports them.
FORMATS: Registry[type[ShardFormat]] = Registry("shard format", "udfs.shards")
register_format = FORMATS.register


def get_format(name: str, settings: Any = None) -> ShardFormat:
    """The format registered as ``name``, set up from ``settings`` if given (defaults serve
    ``check`` and naming)."""
    cls = FORMATS.get(name)
    return cls() if settings is None else cls.from_settings(settings)


def known_formats() -> tuple[str, ...]:
    """Format names in registration order."""
    return FORMATS.names()


def format_problem(sample: dict, frames: Frames, formats: Iterable[str | ShardFormat]) -> str | None:
    """Why the first of ``formats`` (names, or formats set up from the config) that cannot
    express ``sample`` refuses it, or None.

    The tokens stage drops such a sample for the model, so every format of a model holds the
    same samples and no writer meets a sample it cannot write.
    """
    for fmt in formats:
        # outside the try: an unknown format is an error, not a reason
        shard_format = fmt if isinstance(fmt, ShardFormat) else get_format(fmt)
        try:
            shard_format.check(sample, frames)
        except ValueError as err:
            return f"not expressible as {shard_format.name}: {err}"
    return None
