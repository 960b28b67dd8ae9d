"""``samples``: a recipe's queries are samples already in the lake, of the ``sources`` listed
(all when none), matching ``where`` (a Spark SQL predicate), and, with ``flagged_by``, only
those one of the named per-sample checks finds fault with (``refusal``, ``empty_answer``:
VideoChat2-IT's answers such as "Sorry, ..."), with the default filter settings.

The job reads the table; ``queries_of_samples`` makes the queries, one per sample, or one per
sample and target language for a translation.
"""
from __future__ import annotations

import importlib
from typing import Any, Iterable, Iterator, Sequence

from udfs.adapters.options import Option
from udfs.filters import FilterSettings
from udfs.filters.base import CHECKS, SampleView
from udfs.generate.loaders import Query, QueryLoader, register_loader

FLAG_CHECKS = ("refusal", "empty_answer")  # the checks that need no frames and no model


def _names(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        return f"must be a list of names, got {value!r:.60}"
    return None


def _checks(value: Any) -> str | None:
    if _names(value) or not set(value) <= set(FLAG_CHECKS):
        return f"must be a list of {', '.join(FLAG_CHECKS)}, got {value!r:.60}"
    return None


def _predicate(value: Any) -> str | None:
    return None if isinstance(value, str) and value.strip() else "must be a Spark SQL predicate string"


@register_loader("samples")
class SamplesLoader(QueryLoader):
    reads_samples = True
    options = {"sources": Option([], _names), "where": Option(None, _predicate), "flagged_by": Option([], _checks)}

    def check_options(self, given: dict) -> list[str]:
        where = given.get("where")
        return super().check_options(given) + ([f"where: {_predicate(where)}"] if where is not None and
                                               _predicate(where) else [])


def flagged(sample: dict, checks: Sequence[str], settings: FilterSettings = FilterSettings()) -> bool:
    """Whether one of ``checks`` finds fault with the sample."""
    view = SampleView(sample, None, None, {}, None, settings)
    for name in checks:
        importlib.import_module(f"udfs.filters.{name}")  # registers the check
        if CHECKS.get(name).run(view):
            return True
    return False


def queries_of_samples(samples: Iterable[dict], flagged_by: Sequence[str] = (),
                       languages: Sequence[str] = ()) -> Iterator[Query]:
    """The queries of ``samples`` (``schemas.SAMPLES`` rows): each sample (flagged by one of
    ``flagged_by``, when given), once per target language when ``languages`` are given."""
    for sample in samples:
        if flagged_by and not flagged(sample, flagged_by):
            continue
        for lang in languages or [None]:
            query_id = sample["sample_id"] if lang is None else f"{sample['sample_id']}:{lang}"
            yield Query(query_id, list(sample["media"]), None, sample, lang)
