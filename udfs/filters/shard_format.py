"""Shard format: the first of the model's shard formats that cannot express the sample.

Dropping it here keeps every format of a model to the same samples.
"""
from __future__ import annotations

from udfs.filters.base import SampleView, register_check
from udfs.shards import format_problem


@register_check("shard_format", needs_frames=True)
def shard_format(view: SampleView) -> str | None:
    if not view.formats:
        return None
    frames = [[{**f, "path": f["uri"]} for f in item] for item in view.frames]
    examples = [{**item, "frames": [{**f, "path": f["uri"]} for f in item["frames"] or []]}
                for item in view.sample.get("in_context_frames") or []]
    return format_problem({**view.sample, "in_context_frames": examples}, frames, view.formats)
