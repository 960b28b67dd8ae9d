"""Source options: what an adapter reads from its source's ``options:``, with a default and
a check, so a bad option fails ``framelake validate`` (and the config load) instead of
rejecting every record of the source."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# Keys every source may carry in ``options`` besides its adapter's own (the config puts the
# source's ``where:`` there).
COMMON_OPTIONS = ("where",)
# The URI schemes a record's media may use instead of a path under ``media_root``.
REMOTE_SCHEMES = ("s3", "https")


@dataclass(frozen=True)
class Option:
    """One option: its default, and what is wrong with a given value (None when it is fine)."""

    default: Any
    problem: Callable[[Any], str | None]


def positive_int(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return f"must be a positive integer, got {value!r:.40}"
    return None


def non_empty_string(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return f"must be a non-empty string, got {value!r:.40}"
    return None


def boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else f"must be true or false, got {value!r:.40}"


def file_extension(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip("."):
        return f"must be an extension such as '.mp4', got {value!r:.40}"
    return None


def one_of(*values: str) -> Callable[[Any], str | None]:
    def problem(value: Any) -> str | None:
        return None if value in values else f"must be one of {', '.join(values)}, got {value!r:.40}"

    return problem


def remote_schemes(value: Any) -> str | None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v in REMOTE_SCHEMES for v in value):
        return f"must be a list of {', '.join(REMOTE_SCHEMES)}, got {value!r:.40}"
    return None


# The options of every source, whatever its format (``Adapter`` adds them to its own):
# ``allow_remote_media`` lists the schemes a record may give media by URI (formats with inline
# images have no media paths and never use it). ``media_dataset`` names the media root in media
# ids (``udfs.sample.media_key``; the config fills in its default, ``udfs.sample.media_datasets``).
SOURCE_OPTIONS: dict[str, Option] = {
    "allow_remote_media": Option([], remote_schemes),
    "media_dataset": Option(None, non_empty_string),
}


def source_option(given: Mapping[str, Any], key: str) -> Any:
    """A source's value of one of ``SOURCE_OPTIONS``, or its default."""
    return given.get(key, SOURCE_OPTIONS[key].default)


def option_problems(declared: Mapping[str, Option], given: Mapping[str, Any]) -> list[str]:
    """``<key>: <problem>`` for each unknown or invalid option in ``given``."""
    problems = []
    for key, value in given.items():
        if key in COMMON_OPTIONS:
            continue
        if key not in declared:
            known = ", ".join(sorted(declared)) or "none"
            problems.append(f"{key}: unknown option (known: {known})")
            continue
        problem = declared[key].problem(value)
        if problem:
            problems.append(f"{key}: {problem}")
    return problems
