"""Token budget: the sample's token problem (over ``max_tokens``, or a count that failed), once
frame fitting has had its chance.

``fit`` runs before the checks: a sample over ``max_tokens`` only because of its frames gets
fewer frames (``fit_frames``, not below ``min_frames``) instead of being dropped, and every
later check and the shards stage see those frames.
"""
from __future__ import annotations

from typing import Mapping, Sequence

from udfs.filters.base import SampleView, register_check
from udfs.filters.settings import FilterSettings
from udfs.sample import RejectError
from udfs.selection import select_frames
from udfs.token_lengths import ModelProfile, visual_cost


@register_check("token_budget", needs_frames=True)
def token_budget(view: SampleView) -> str | None:
    return view.row["reason"]


def media_kind(media_frames: Sequence[Mapping]) -> str:
    """The kind the visual rule prices: "text", "image" (stills only) or "video"."""
    kinds = {m["kind"] for m in media_frames}
    if not kinds:
        return "text"
    return "image" if kinds == {"image"} else "video"


def frame_sizes(selected: Sequence[Sequence[Mapping]]) -> list[tuple[int, int]]:
    return [(f["width"], f["height"]) for frames in selected for f in frames]


def fit(
    sample: Mapping, selected: list[list[dict]], row: dict, profile: ModelProfile, settings: FilterSettings
) -> list[list[dict]]:
    """The frames ``sample`` uses: ``selected``, or fewer when only they put it over ``max_tokens``.

    Updates ``row`` to match: the counts, ``frame_budget`` and ``trimmed`` of fitted frames,
    else a reason that says why fitting could not help.
    """
    over = row["reason"]
    if row["total_tokens"] is None or row["total_tokens"] <= profile.max_tokens or not settings.fit_frames:
        return selected
    if row["text_tokens"] > profile.max_tokens:
        row["reason"] = f"{over}; the text alone has {row['text_tokens']} tokens"
        return selected
    fitted = fit_frames(sample["media_frames"], profile, row["text_tokens"], row["n_frames"], settings.min_frames)
    if fitted is None:
        row["reason"] = f"{over} with {row['n_frames']} frames, and with min_frames {settings.min_frames} too"
        return selected
    budget, selected, visual = fitted
    n_frames = sum(map(len, selected))
    row.update(
        n_frames=n_frames, visual_tokens=visual, total_tokens=row["text_tokens"] + visual,
        t2vid_estimate=row["t2vid_estimate"] + profile.t2vid_k * (n_frames - row["n_frames"]),
        fits=True, reason=None, frame_budget=budget, trimmed=True,
    )
    return selected


def fit_frames(
    media_frames: Sequence[Mapping], profile: ModelProfile, text_tokens: int, used: int, min_frames: int
) -> tuple[int, list[list[dict]], int] | None:
    """(budget, frames, visual tokens) of the largest frame budget in ``[min_frames, used - 1]``
    whose frames fit ``max_tokens`` next to ``text_tokens``; None if even ``min_frames`` do not.

    Each budget picks its frames with ``select_frames`` (T2Vid's uniform rule per video). A
    smaller budget never costs more visual tokens, so the largest fitting budget is found by
    bisection.
    """
    kind = media_kind(media_frames)

    def frames_if_fitting(budget: int) -> tuple[list[list[dict]], int] | None:
        try:
            selected = select_frames(media_frames, budget)
        except RejectError:  # fewer frames than media items
            return None
        visual, problem = visual_cost(profile, frame_sizes(selected), kind)
        if problem or text_tokens + visual > profile.max_tokens:
            return None
        return selected, visual

    best, low, high = None, min_frames, used - 1
    while low <= high:
        budget = (low + high) // 2
        found = frames_if_fitting(budget)
        if found:
            best, low = (budget, *found), budget + 1
        else:
            high = budget - 1
    return best
