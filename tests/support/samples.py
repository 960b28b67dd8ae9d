"""Canonical samples as the filters get them: each with ``media_frames``, the frames the
frames stage extracted (or not) for each of its media items."""
from __future__ import annotations

from udfs.sample import MEDIA_TOKEN, make_media, make_sample, turn

FRAME_BYTES = 1000


def frames(video: str, n: int, size=(64, 48)) -> list[dict]:
    return [{"frame_index": i, "timestamp_s": float(i), "uri": f"/lake/frames/{video}/{i:05d}.jpg",
             "width": size[0], "height": size[1], "bytes": FRAME_BYTES} for i in range(n)]


def sample(key: str, media: list[tuple[str, int]], first_user: str, answers=("A ball rolls.",), status="ok",
           source="qa") -> dict:
    """A canonical sample plus ``media_frames``: ``media`` is (kind, frame count) per item."""
    refs = [make_media(kind, f"s3://media/{key}-{i}.{'jpg' if kind == 'image' else 'mp4'}")
            for i, (kind, _) in enumerate(media)]
    conversations = [turn("user", first_user)]
    for i, answer in enumerate(answers):
        conversations += ([turn("user", f"And then {i}?")] if i else []) + [turn("assistant", answer)]
    row = make_sample(source=source, fmt="test", source_file="f.json", file_key="f.json", record_index=0,
                      record_key=key, media=refs, conversations=conversations, raw="{}")
    row["media_frames"] = [
        {"position": i, "kind": kind, "status": status,
         "frames": frames(ref["media_id"], n) if status == "ok" else None}
        for i, ((kind, n), ref) in enumerate(zip(media, refs))
    ]
    return row


def video(key: str, n_frames: int = 4, question: str = "What happens?", **kwargs) -> dict:
    return sample(key, [("video", n_frames)], f"{MEDIA_TOKEN}\n{question}", **kwargs)
