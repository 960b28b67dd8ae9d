"""Which frames of a sample a model sees, given a frame budget: the model's ``max_frames``, or
less when the tokens stage subsampled the sample to fit ``max_tokens``.

Tokens and shards both call ``select_frames`` with the budget recorded in ``token_lengths``
(``frame_budget``), so the frames counted are the frames emitted.
"""
from __future__ import annotations

from udfs.sample import RejectError
from udfs.sampling import uniform_indices


def select_frames(media: list[dict], max_frames: int) -> list[list[dict]]:
    """Per media item, the frames kept for a model.

    ``media`` is the sample's media in order, each ``{"kind", "status", "frames": [...]}`` with
    frames in timestamp order. Stills keep their one frame; the videos share what is left of
    the budget equally, each subsampled with T2Vid's uniform rule. Raises ``RejectError`` when a
    media item has no frames or the stills alone exceed the budget.
    """
    for position, item in enumerate(media):
        if item.get("status") != "ok" or not item.get("frames"):
            status = item.get("status") or "not extracted"
            raise RejectError(f"frames missing for media {position} ({status})")
    videos = {i for i, item in enumerate(media) if item["kind"] != "image"}
    stills = len(media) - len(videos)
    budget = max_frames - stills
    if budget < len(videos) or (not videos and stills > max_frames):
        raise RejectError(f"{len(media)} media items exceed max_frames={max_frames}")
    per_video = budget // len(videos) if videos else 0
    selected = []
    for i, item in enumerate(media):
        frames = item["frames"]
        if i in videos:
            frames = [frames[j] for j in uniform_indices(len(frames), per_video)]
        selected.append(frames)
    return selected
