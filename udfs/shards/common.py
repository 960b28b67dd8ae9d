"""What several formats share: frame and conversation checks, JSON dumping, hashed writes, and
the format of one JSON array per shard."""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any, BinaryIO, Iterable, Sequence

from udfs.sample import MEDIA_TOKEN
from udfs.shards.base import Frames, OpenWriter, ReadFrame, SampleWithFrames, ShardFile, ShardFormat

_PLACEHOLDER = re.compile(r"[ \t]*" + re.escape(MEDIA_TOKEN))


def check_frames(sample: dict, frames: Frames) -> None:
    """Frames align with the media, and each media item has its one placeholder."""
    media = sample["media"]
    placeholders = sum(t["content"].count(MEDIA_TOKEN) for t in sample["conversations"])
    if placeholders != len(media):
        raise ValueError(f"{placeholders} media placeholders for {len(media)} media items")
    if len(frames) != len(media):
        raise ValueError(f"{len(frames)} frame lists for {len(media)} media items")
    for item, item_frames in zip(media, frames):
        if not item_frames:
            raise ValueError(f"media {item['media_id']} has no frames")
        if item["kind"] == "image" and len(item_frames) != 1:
            raise ValueError(f"image media {item['media_id']} has {len(item_frames)} frames, expected 1")


def reject_text_matching(conversations: Iterable[dict], pattern: re.Pattern, what: str) -> None:
    for turn in conversations:
        found = pattern.search(turn["content"])
        if found:
            raise ValueError(f"{turn['role']} text contains {found.group(0)!r}, read as {what}")


def split_system(conversations: Sequence[dict]) -> tuple[str, list[dict]]:
    """The joined text of the leading system turns, and the turns after them (starting with user)."""
    lead = 0
    while lead < len(conversations) and conversations[lead]["role"] == "system":
        lead += 1
    turns = list(conversations[lead:])
    if any(t["role"] == "system" for t in turns):
        raise ValueError("system turn after the conversation started")
    if not turns or turns[0]["role"] != "user":
        raise ValueError("conversation does not start with a user turn")
    return "\n".join(t["content"] for t in conversations[:lead] if t["content"]), turns


def without_placeholders(content: str) -> str:
    return _PLACEHOLDER.sub("", content).strip()


def dumps(value: Any) -> str:
    # allow_nan=False: NaN/Infinity are not JSON and break strict readers.
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


class HashingWriter:
    """A binary file wrapper that counts bytes and hashes them on the way through.

    The manifest row's ``bytes`` and ``sha256`` then cost no re-read of the shard.
    """

    def __init__(self, fileobj: BinaryIO) -> None:
        self._fileobj = fileobj
        self._hash = hashlib.sha256()
        self.bytes = 0

    def write(self, data: bytes) -> int:
        self._fileobj.write(data)
        self._hash.update(data)
        size = memoryview(data).nbytes
        self.bytes += size
        return size

    def flush(self) -> None:
        self._fileobj.flush()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def write_json_shard(records: Iterable[dict], fileobj: BinaryIO) -> int:
    """Stream ``records`` as one JSON array (UTF-8, one record per line); returns the count.

    MiniCPM-V's and LLaVA's training code ``json.load`` one list per file.
    """
    count = 0
    fileobj.write(b"[")
    for record in records:
        fileobj.write(b",\n" if count else b"\n")
        fileobj.write(dumps(record).encode("utf-8"))
        count += 1
    fileobj.write(b"\n]\n" if count else b"]\n")
    return count


class JsonShardFormat(ShardFormat):
    """A shard is one JSON array of records; subclasses implement ``record``."""

    extension = ".json"

    def record(self, sample: dict, frames: Frames) -> dict:
        """The sample's record; raises ``ValueError`` if the format cannot express it."""
        raise NotImplementedError

    def check(self, sample: dict, frames: Frames) -> None:
        self.record(sample, frames)

    def write(
        self, uri: str, samples: Sequence[SampleWithFrames], open_writer: OpenWriter, read_frame: ReadFrame
    ) -> list[ShardFile]:
        with open_writer(uri) as raw:
            out = HashingWriter(raw)
            count = write_json_shard((self.record(sample, frames) for sample, frames in samples), out)
        return [ShardFile(uri, count, out.bytes, out.sha256)]
