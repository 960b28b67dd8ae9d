"""Query loaders: where a recipe's queries come from, registered by name as the normalize
adapters are.

A query is what one request is made of: an id, the media of the samples it becomes, the
``annotations`` its template renders (captions, dense captions, objects, timestamps), and, for
rewrites and translations, the sample it comes from. Built in: ``samples`` (a configured
source's samples, read by the job from the ``samples`` table) and ``file`` (a plain
``{id, media, annotations}`` file). A custom loader, like a Syphus dataset class
(``_load_query_inputs``, ``_load_prefix``), is a ``QueryLoader`` registered with
``@register_loader("name")`` in a module the recipe names (``queries.module``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, ClassVar, Iterator

from udfs.adapters.options import Option, option_problems
from udfs.registry import Registry


@dataclass(frozen=True)
class Query:
    """One query. ``media``: ``schemas.MEDIA`` rows; ``sample``: the ``schemas.SAMPLES`` row a
    rewrite or translation starts from; ``lang``: a translation's target language;
    ``problem``: why the query cannot be made (it becomes a reject)."""

    query_id: str
    media: list[dict] = field(default_factory=list)
    annotations: Any = None
    sample: dict | None = None
    lang: str | None = None
    problem: str | None = None


class QueryLoader:
    """Base class. ``load`` runs on the driver and yields the queries; ``prefix`` may replace
    the recipe's system message and in-context turns (Syphus's ``_load_prefix``)."""

    name: ClassVar[str]
    options: ClassVar[dict[str, Option]] = {}
    # The ``samples`` loader: the job reads the table, ``udfs.generate.loaders.samples`` makes the queries.
    reads_samples: ClassVar[bool] = False

    def check_options(self, given: dict) -> list[str]:
        return option_problems(self.options, given)

    def option(self, given: dict, key: str) -> Any:
        return given.get(key, self.options[key].default)

    def load(self, options: dict, open_binary: Callable[[str], BinaryIO]) -> Iterator[Query]:
        raise NotImplementedError

    def prefix(self, options: dict) -> tuple[str | None, list[dict] | None]:
        """(system message, in-context turns); None keeps the recipe's."""
        return None, None


# Importing ``udfs.generate.loaders.builtin`` registers the built-in loaders.
LOADERS: Registry[type[QueryLoader]] = Registry("query loader", "udfs.generate.loaders.builtin")
register_loader = LOADERS.register


def get_loader(name: str) -> QueryLoader:
    return LOADERS.get(name)()
