"""Redaction of credentials from text that may quote a URL or a signed request: error messages
of ffmpeg, PyAV, boto3 and the stores, before they reach tables, logs or reports.

A presigned S3 URL carries its credential and signature in the query string, and some tools
quote a request's headers (``Credential=AKIA.../..., Signature=...``, ``Bearer sk-...``): the
query of every URL, every signing parameter and every bearer token or API key parameter are
cut out, keeping the scheme, host and path that make an error readable.
"""
from __future__ import annotations

import re

REDACTED = "[redacted]"

# A URL's query string (and fragment): everything after "?" up to whitespace or a quote.
_URL_QUERY = re.compile(r"""(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'"<>?#]*)[?#][^\s'"<>]*""")
# Signing parameters wherever they appear: in a query, an Authorization header, a log line.
_SIGNING_PARAM = re.compile(
    r"""(?:X-Amz-(?:Signature|Credential|Security-Token)|Signature|Credential|AWSAccessKeyId|"""
    r"""SecurityToken)\s*[=:]\s*[^\s&,;'"<>]+""",
    re.IGNORECASE,
)
# An HTTP Authorization value or an API key given as a parameter (an LLM endpoint's key).
_TOKEN = re.compile(r"""\b(?:(Bearer|Basic)\s+|(api[-_]?key)\s*[=:]\s*)[^\s&,;'"<>]+""", re.IGNORECASE)
# User info in a URL (scheme://user:password@host).
_URL_USERINFO = re.compile(r"""(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/'"<>@]+@""")


def redact(text: str | None) -> str | None:
    """``text`` with URL queries, user info and signing parameters replaced by ``[redacted]``."""
    if not text:
        return text
    text = _URL_QUERY.sub(lambda m: f"{m.group(1)}?{REDACTED}", text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    text = _TOKEN.sub(lambda m: f"{m.group(1) or m.group(2)}{' ' if m.group(1) else '='}{REDACTED}", text)
    return _SIGNING_PARAM.sub(REDACTED, text)  # the name too: "Signature=" itself marks a leak
