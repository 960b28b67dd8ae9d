"""Short stable digests of settings: what a table's rows were made with, so a rerun knows
whether they can be kept."""
from __future__ import annotations

import hashlib
import json
from typing import Any


def fingerprint(value: Any) -> str:
    """16 hex digits of the SHA-256 of ``value`` as canonical JSON (keys sorted; values JSON
    does not know, such as paths, by ``str``)."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
