"""Canonical samples with real JPEG frames, as the shards stage passes them to the formats."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from udfs.sample import MEDIA_TOKEN, make_media, make_sample, turn

SampleWithFrames = tuple[dict, list[list[dict]]]


def frame_row(path: str, index: int = 0, size: tuple[int, int] = (8, 8)) -> dict:
    """A frame as the job passes it: ``path`` is relative to the frames root."""
    return {"frame_index": index, "timestamp_s": float(index), "path": path, "width": size[0], "height": size[1]}


def write_frames(root: Path, media: dict, sizes: list[tuple[int, int]]) -> list[dict]:
    """Real JPEG frames of one media item under ``root``, as the frames table describes them."""
    frames = []
    for index, size in enumerate(sizes):
        relative = f"frames/{media['media_id']}/{index:05d}.jpg"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (40 * index % 256, 90, 160)).save(root / relative, "JPEG")
        frames.append(frame_row(relative, index, size))
    return frames


def build_sample(key: str, media: list[dict], first_user: str, extra_turns: list[dict] = (), **kwargs) -> dict:
    conversations = [turn("user", first_user), turn("assistant", f"answer of {key}"), *extra_turns]
    return make_sample(
        source="demo", fmt="test", source_file="demo.json", file_key="demo.json", record_index=0, record_key=key,
        media=media, conversations=conversations, raw="{}", **kwargs,
    )


def video_sample(root: Path, key: str, n_frames: int, size: tuple[int, int] = (64, 48)) -> SampleWithFrames:
    video = make_media("video", f"s3://media/{key}.mp4")
    sample = build_sample(key, [video], f"{MEDIA_TOKEN}\nWhat happens in {key}?")
    return sample, [write_frames(root, video, [size] * n_frames)]


def reader_under(root: Path):
    return lambda frame: (root / frame["path"]).read_bytes()
