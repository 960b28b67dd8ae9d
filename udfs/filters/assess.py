"""``assess``: a batch of samples, with the frames of their media, to ``TOKEN_LENGTHS`` rows for
one model: the token counts, the frames used, and whether the sample is kept (else the reason)."""
from __future__ import annotations

from typing import Mapping, Sequence

from udfs.filters.base import SampleView, run_checks
from udfs.filters.settings import FilterSettings
from udfs.filters.token_budget import fit, frame_sizes, media_kind
from udfs.sample import RejectError
from udfs.selection import select_frames
from udfs.token_lengths import ModelProfile, token_lengths
from udfs.tokenizers import TokenCounter


def assess(
    profile: ModelProfile,
    counter: TokenCounter,
    settings: FilterSettings,
    batch: Sequence[Mapping],
    formats: Sequence[str] = (),
) -> list[dict]:
    """One ``TOKEN_LENGTHS`` row per sample of ``batch`` (``settings`` column left null).

    A sample has ``sample_id``, ``conversations`` and ``media_frames`` (per media item, in
    order: ``kind``, ``status``, ``frames`` with ``uri``, sizes and ``bytes``); to be checked
    against shard ``formats`` it also needs ``media`` and ``in_context``. Frames are chosen by
    ``select_frames`` with ``frame_budget``: ``max_frames``, or less when the sample is over
    ``max_tokens`` only because of its frames and ``fit_frames`` is on.
    """
    chosen = [_select(sample, profile.max_frames) for sample in batch]
    rows = token_lengths(profile, counter, [
        {"sample_id": sample["sample_id"], "conversations": sample["conversations"],
         "frame_sizes": frame_sizes(frames or []), "media_kind": media_kind(sample["media_frames"])}
        for sample, (frames, _) in zip(batch, chosen)
    ])
    for sample, (frames, missing), row in zip(batch, chosen, rows):
        row.update(frame_budget=profile.max_frames, trimmed=False, settings=None)
        if frames is not None:
            frames = fit(sample, frames, row, profile, settings)
        row["payload_bytes"] = sum(len(t["content"].encode("utf-8")) for t in sample["conversations"]) + sum(
            f["bytes"] for item in frames or [] for f in item
        )
        reason, flags = run_checks(SampleView(sample, frames, missing, row, profile, settings, tuple(formats)))
        row.update(kept=reason is None, reason=reason, flags=flags)
    return rows


def _select(sample: Mapping, max_frames: int) -> tuple[list[list[dict]] | None, str | None]:
    """(frames, None), or (None, why they are missing)."""
    try:
        return select_frames(sample["media_frames"], max_frames), None
    except RejectError as err:
        return None, str(err)
