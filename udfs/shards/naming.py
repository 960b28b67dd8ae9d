"""Where shards go, relative to the output root: ``<model>/<format>/shard-00000<extension>``."""
from __future__ import annotations

from udfs.shards.base import get_format


def shard_dir(model: str, fmt: str) -> str:
    """The folder of one (model, format) output, relative to the output root: ``<model>/<fmt>``."""
    get_format(fmt)  # raises ValueError for an unknown format
    if not model or "/" in model or "\\" in model or model in (".", ".."):
        raise ValueError(f"model name {model!r} is not a single path segment")
    return f"{model}/{fmt}"


def shard_name(model: str, fmt: str, index: int) -> str:
    """``<model>/<fmt>/shard-00000.json`` (``.tar`` for webdataset; for mimicit the stem of
    its three files), relative to the output root."""
    return f"{shard_dir(model, fmt)}/shard-{index:05d}{get_format(fmt).extension}"
