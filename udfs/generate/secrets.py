"""The endpoint's key and the Syphus variables, and how the key is kept out of every text.

The key comes from the environment only (``OPENAI_API_KEY``), never from a file; the config
and the Syphus variables (``OPENAI_API_TYPE``, ``OPENAI_API_BASE``, ``OPENAI_API_VERSION``,
``OPENAI_API_ENGINE``) give the rest, the config first. The key travels to the executors inside
a ``Secret``, which prints as ``[redacted]``; every error text bound for a table or a log goes
through ``scrub``: ``udfs.redact`` (URL queries and user info, signing parameters, bearer
tokens) and the key's own value cut out.
"""
from __future__ import annotations

from typing import Mapping
from urllib.parse import urlparse

from udfs.redact import REDACTED, redact

KEY_VARIABLE = "OPENAI_API_KEY"
# The endpoint's settings Syphus reads from the environment: setting -> variable.
SYPHUS_VARIABLES = {"api_type": "OPENAI_API_TYPE", "base_url": "OPENAI_API_BASE",
                    "api_version": "OPENAI_API_VERSION", "model": "OPENAI_API_ENGINE"}


class Secret:
    """A credential that never shows in a repr, a log line or an error message."""

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__


def api_key(environ: Mapping[str, str]) -> Secret | None:
    value = environ.get(KEY_VARIABLE)
    return Secret(value) if value else None


def from_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The endpoint settings the Syphus variables set."""
    return {setting: environ[variable] for setting, variable in SYPHUS_VARIABLES.items() if environ.get(variable)}


def endpoint_host(base_url: str) -> str:
    """``host[:port]`` of an endpoint URL: no user info, path or query, where credentials hide."""
    parsed = urlparse(base_url)
    host = parsed.hostname or ""
    return f"{host}:{parsed.port}" if parsed.port else host


def scrub(text: str | None, *secrets: Secret | None) -> str:
    """``text`` with credentials cut out (see the module docstring)."""
    text = redact(text or "") or ""
    for secret in secrets:
        if secret is not None and secret.reveal():
            text = text.replace(secret.reveal(), REDACTED)
    return text
