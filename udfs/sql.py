"""Spark SQL text built from values, quoted as literals."""
from __future__ import annotations


def sql_in(column: str, values: list[str]) -> str:
    """``column IN ('a', 'b')`` with the values quoted as SQL string literals."""
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"{column} IN ({quoted})"
