"""Imports every built-in adapter module, which registers it."""

from udfs.adapters import (  # noqa: F401
    conversations_jsonl,
    llava,
    m3it,
    messages,
    mimicit,
    minicpmv,
    t2vid_text,
    videochat2,
    videoinstruct100k,
)
