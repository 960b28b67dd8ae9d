"""Source-format adapters, registered by name.

An adapter turns the files of one source into canonical samples (``udfs.sample``). It never
raises for a bad record: ``udfs.normalize.normalize_unit`` turns a ``RejectError`` (or any
other exception) from ``normalize`` into a reject row, so count in = samples + rejects.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, BinaryIO, Callable, ClassVar, Iterator

from udfs.adapters.compression import compression_of
from udfs.adapters.options import SOURCE_OPTIONS, Option, option_problems
from udfs.registry import Registry

if TYPE_CHECKING:
    from udfs.adapters.readers import Split



@dataclass(frozen=True)
class SourceSpec:
    """One entry of the config's ``sources:`` list."""

    name: str
    format: str
    annotations: str
    media_root: str
    media_type: str | None = None
    options: dict = field(default_factory=dict)

    def file_key(self, uri: str) -> str:
        """``uri`` relative to the annotations root, so that sample ids stay the same when a
        dataset moves (a local folder copied to S3, another mount point)."""
        return _file_key(self.annotations, uri)


@functools.lru_cache(maxsize=4096)  # asked once per record, of the few files of a unit
def _file_key(annotations: str, uri: str) -> str:
    pattern = annotations.rstrip("/")
    if uri == pattern:
        return uri.rsplit("/", 1)[-1]
    wildcard = next((i for i, ch in enumerate(pattern) if ch in "*?["), None)
    root = pattern if wildcard is None else pattern[: pattern.rfind("/", 0, wildcard)]
    return uri[len(root) + 1:] if uri.startswith(root + "/") else uri


@dataclass
class RawRecord:
    """One record as read from a file: parsed ``value`` or a parse ``error``, plus its text."""

    index: int
    key: Any
    text: str
    value: Any = None
    error: str | None = None


@dataclass
class NormalizeContext:
    """What an adapter may use besides the record: the source, and object I/O."""

    spec: SourceSpec
    open_binary: Callable[..., BinaryIO]  # (uri, offset=0) -> stream from byte offset
    put_inline: Callable[[bytes, str], str]  # (image bytes, extension) -> URI in the lake
    # (path relative to the lake's media root, bytes) -> URI; None where nothing is stored
    put_object: Callable[[str, bytes], str] | None = None


class Adapter:
    """Base class: one work unit per file; subclasses implement ``read`` and ``normalize``.

    A ``splittable`` adapter reads a big file in splits (``udfs.adapters.readers.Split``) too:
    its units are one file each, a JSON array or JSON lines.
    """

    name: ClassVar[str]
    splittable: ClassVar[bool] = False
    # The source options this adapter reads (``udfs.adapters.options``), checked at config load;
    # every source also takes ``SOURCE_OPTIONS``.
    options: ClassVar[dict[str, Option]] = {}

    def check_options(self, given: dict) -> list[str]:
        """``<key>: <problem>`` for each unknown or invalid option of a source."""
        return option_problems({**SOURCE_OPTIONS, **self.options}, given)

    def option(self, spec: SourceSpec, key: str) -> Any:
        """A source's value of one of this adapter's options, or its default."""
        return spec.options.get(key, self.options[key].default)

    def can_split(self, uri: str) -> bool:
        """Whether a big file is read in splits: a compressed stream has no byte offsets to
        start a split at."""
        return self.splittable and compression_of(uri) is None

    def plan(self, files: list[str]) -> list[list[str]]:
        """Group annotation files into work units (lists of URIs read together)."""
        return [[f] for f in sorted(files)]

    def read(self, unit: list[str], ctx: NormalizeContext, split: Split | None = None) -> Iterator[RawRecord]:
        """The records of the unit, or of one ``split`` of its file (splittable adapters)."""
        raise NotImplementedError

    def normalize(self, record: RawRecord, source_file: str, ctx: NormalizeContext) -> list[dict]:
        """Canonical sample rows of one record; raises ``RejectError`` with a reason."""
        raise NotImplementedError

    def describe_file(self, uri: str, open_binary: Callable[..., BinaryIO]) -> str:
        """What ``framelake validate`` says of one annotation file, from its first bytes: its
        layout and compression ("JSON lines, gzip"); raises with the reason when it cannot
        be read as this format."""
        raise NotImplementedError


# Importing ``udfs.adapters.builtin`` registers the built-in adapters.
ADAPTERS: Registry[type[Adapter]] = Registry("source format", "udfs.adapters.builtin")
register = ADAPTERS.register


def get_adapter(name: str) -> Adapter:
    return ADAPTERS.get(name)()


def known_formats() -> list[str]:
    return sorted(ADAPTERS.names())
