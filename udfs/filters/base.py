"""The contract of a per-sample check, and the one chain that runs the checks in order.

A check is a function of one ``SampleView`` that returns a reason (why the sample is not
fit to train on) or None, registered by name with ``@register_check``. What happens to a
reason is the check's mode: a ``FilterSettings`` field named at registration ("drop",
"flag" or "off"), else always "drop". Each check lives in ``udfs/filters/<name>.py``;
``ORDER`` names them in their order of precedence.
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from typing import Callable, Mapping

from udfs.filters.settings import FilterSettings
from udfs.registry import Registry
from udfs.token_lengths import ModelProfile

# A dropped sample gets the reason of the first check, in this order, that drops it.
ORDER = ("frames_missing", "media_layout", "turn0_words", "empty_answer", "refusal", "token_budget", "shard_format")


@dataclass(frozen=True)
class SampleView:
    """One sample as the checks see it, with the frames chosen for the model."""

    # sample_id, conversations, media_frames; media, in_context and in_context_frames for shard formats
    sample: Mapping
    frames: list[list[dict]] | None  # per media item, after frame fitting; None: frames missing
    frames_missing: str | None  # why ``frames`` is None
    row: Mapping  # its TOKEN_LENGTHS row so far: token counts for ``frames``, the token problem
    profile: ModelProfile
    settings: FilterSettings
    formats: tuple = ()  # the model's shard formats: names, or formats set up from the config

    @property
    def conversations(self) -> list[dict]:
        return self.sample["conversations"]

    @property
    def turn0(self) -> Mapping | None:
        """Turn 0 as T2Vid sees it: the first turn after any system turns."""
        return next((t for t in self.conversations if t["role"] != "system"), None)


CheckFn = Callable[[SampleView], str | None]


@dataclass(frozen=True)
class Check:
    run: CheckFn
    mode_setting: str | None  # the FilterSettings field with the mode; None: always "drop"
    needs_frames: bool  # not run when the frames are missing

    def mode(self, settings: FilterSettings) -> str:
        return getattr(settings, self.mode_setting) if self.mode_setting else "drop"


CHECKS: Registry[Check] = Registry("filter")


def register_check(name: str, mode: str | None = None, needs_frames: bool = False) -> Callable[[CheckFn], CheckFn]:
    """Registers a check; ``mode``: the ``FilterSettings`` field with its mode (None: "drop")."""
    if mode is not None and mode not in FilterSettings.__dataclass_fields__:
        raise ValueError(f"check {name!r}: mode {mode!r} is not a FilterSettings field")

    def decorate(run: CheckFn) -> CheckFn:
        CHECKS.register(name)(Check(run, mode, needs_frames))
        return run

    return decorate


@functools.cache
def chain() -> tuple[Check, ...]:
    """The checks of ``ORDER``; importing a check's module registers it."""
    for name in ORDER:
        importlib.import_module(f"udfs.filters.{name}")
    return tuple(CHECKS.get(name) for name in ORDER)


def run_checks(view: SampleView) -> tuple[str | None, list[str]]:
    """(reason, flags) of one sample: the first "drop" finding, and the "flag" findings.

    Once a sample is dropped, only the checks in "flag" mode still run: their findings are
    kept, while a later reason would not be (and a shard format need not refuse a dropped
    sample).
    """
    reason, flags = None, []
    for check in chain():
        mode = check.mode(view.settings)
        if mode == "off" or (mode == "drop" and reason) or (check.needs_frames and view.frames is None):
            continue
        finding = check.run(view)
        if finding and mode == "drop":
            reason = finding
        elif finding:
            flags.append(finding)
    return reason, flags
