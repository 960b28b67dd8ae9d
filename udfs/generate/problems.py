"""Every problem of a recipe or of the ``generate:`` section at once, each naming its key, as
the config reports its own (``framelake.config``)."""
from __future__ import annotations

from typing import Any


class RecipeError(ValueError):
    """Problems of a recipe or of the ``generate:`` section, one a line, each starting with its key."""

    def __init__(self, problems: str | list[str]):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class Problems:
    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, problem: str) -> None:
        self.found.append(problem)

    def check(self, parse, *args, **kwargs):
        """``parse(*args, **kwargs)``, or None with its problems recorded."""
        try:
            return parse(*args, **kwargs)
        except RecipeError as err:
            self.found.extend(err.problems)
            return None

    def unknown_keys(self, section: dict, known: set[str] | tuple[str, ...], where: str) -> None:
        for key in sorted(set(section) - set(known)):
            self.add(f"{where}.{key}: unknown key (known: {', '.join(sorted(known))})")

    def raise_if_any(self) -> None:
        if self.found:
            raise RecipeError(self.found)


def mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecipeError(f"{where}: must be a mapping, got {type(value).__name__}")
    return value


def typed(section: dict, key: str, kinds: type | tuple[type, ...], where: str, default: Any = None, *,
          positive: bool = False, required: bool = False) -> Any:
    """``section[key]`` checked for its type (ints pass as floats; bools never pass as numbers)."""
    value = section.get(key)
    if value is None:
        if required:
            raise RecipeError(f"{where}.{key}: required")
        return default
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise RecipeError(f"{where}.{key}: must be a {names}, got {value!r:.60}")
    if positive and not value > 0:
        raise RecipeError(f"{where}.{key}: must be > 0, got {value!r}")
    return value
