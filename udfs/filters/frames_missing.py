"""Frames missing: ``select_frames`` found no frames for a media item, or more media items
than ``max_frames``."""
from __future__ import annotations

from udfs.filters.base import SampleView, register_check


@register_check("frames_missing")
def frames_missing(view: SampleView) -> str | None:
    return view.frames_missing
