"""What several formats share: frame and conversation checks, media tags, in-context examples,
JSON dumping, hashed writes, and the format of one JSON array per shard."""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Iterable, Sequence

from udfs.sample import MEDIA_TOKEN
from udfs.shards.base import Frames, OpenWriter, ReadFrame, SampleWithFrames, ShardFile, ShardFormat

_PLACEHOLDER = re.compile(r"[ \t]*" + re.escape(MEDIA_TOKEN))
_LEADING_PLACEHOLDERS = re.compile(r"\s*(?:" + re.escape(MEDIA_TOKEN) + r"\s*)+")
# What ``shards.in_context`` may say a format without a place for in-context examples does with
# a sample that has them.
IN_CONTEXT_MODES = ("drop", "turns")


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


def check_turn_order(turns: Sequence[dict]) -> None:
    """User and assistant turns alternate from a user turn to an assistant turn, as LLaVA,
    MiniCPM-V and LLaMA-Factory train on them (``turns``: after the system turns)."""
    for k, turn in enumerate(turns):
        expected = ("user", "assistant")[k % 2]
        if turn["role"] != expected:
            raise ValueError(f"turn {k} after the system turns is from the {turn['role']}, expected the {expected}")
    if turns[-1]["role"] != "assistant":
        raise ValueError("conversation ends with a user turn")


def leading_placeholders(content: str) -> tuple[int, str]:
    """How many placeholders open ``content`` (only whitespace around them), and the text after them."""
    run = _LEADING_PLACEHOLDERS.match(content)
    if run is None:
        return 0, content
    return run.group(0).count(MEDIA_TOKEN), content[run.end():]


def with_text_first(content: str, text: str) -> str:
    """``content`` with ``text`` on its own line before the turn's own words: after the
    placeholders that open it, where T2Vid's layout keeps the media."""
    count, rest = leading_placeholders(content)
    head = content[:len(content) - len(rest)].rstrip() if count else ""
    return "\n".join(part for part in (head, text, rest) if part)


@dataclass(frozen=True)
class TaggedMedia:
    """A sample's media as tag-based formats (LLaVA, LLaMA-Factory) list them."""

    images: list[str]  # image paths, in the order of their tags
    videos: list[list[str]]  # per video, its frame paths, in the order of their tags
    tag: Callable[[str], str]  # a turn's text with each placeholder as its media's tag


def tag_media(sample: dict, frames: Frames, image_tag: str, video_tag: str) -> TaggedMedia:
    """Each placeholder becomes ``image_tag`` (a still) or ``video_tag`` (a video or frames
    folder) in place; the k-th tag of a kind stands for the k-th entry of its list, so a reader
    gets the canonical sample back. A video that was read as a list of frame images
    (media_type "video", all media images, their placeholders one newline-joined run) is one
    video again, its run one tag."""
    media = sample["media"]
    frames_run = "\n".join([MEDIA_TOKEN] * len(media))
    if (sample.get("media_type") == "video" and media and all(item["kind"] == "image" for item in media)
            and sum(t["content"].count(frames_run) for t in sample["conversations"]) == 1):
        return TaggedMedia([], [[item_frames[0]["path"] for item_frames in frames]],
                           lambda text: text.replace(frames_run, video_tag))
    images = [item_frames[0]["path"] for item, item_frames in zip(media, frames) if item["kind"] == "image"]
    videos = [[f["path"] for f in item_frames] for item, item_frames in zip(media, frames) if item["kind"] != "image"]

    def tag(text: str) -> str:
        return re.sub(re.escape(MEDIA_TOKEN), lambda _: next(tags), text)

    tags = iter([image_tag if item["kind"] == "image" else video_tag for item in media])
    return TaggedMedia(images, videos, tag)


def with_examples(sample: dict, frames: Frames, mode: str, fmt: str) -> tuple[dict, Frames]:
    """The sample and frames a format without a place for in-context examples writes: as they
    are without examples; with them, ``mode`` "drop" raises ``ValueError`` (the tokens stage
    drops the sample for the model with the reason), "turns" puts them first (``examples_as_turns``)."""
    examples = sample.get("in_context") or []
    if not examples:
        return sample, frames
    if mode == "drop":
        raise ValueError(f"in-context examples ({len(examples)}), which {fmt} records have no place for "
                         "(shards.in_context: turns writes them as earlier turns)")
    return examples_as_turns(sample, frames)


def examples_as_turns(sample: dict, frames: Frames) -> tuple[dict, Frames]:
    """The sample with its in-context examples as earlier exchanges, after its system turns,
    each with its own images; their media lead the media, and their frames (``in_context_frames``:
    per example media item, its ``example`` and ``position``, ``kind``, ``status`` and ``frames``)
    lead the frames. Raises ``ValueError`` for an example whose media is not an extracted image."""
    extracted = {(item["example"], item["position"]): item for item in sample.get("in_context_frames") or []}
    turns = sample["conversations"]
    lead = next((i for i, t in enumerate(turns) if t["role"] != "system"), len(turns))
    conversations, media, example_frames = list(turns[:lead]), [], []
    for number, example in enumerate(sample["in_context"]):
        name = f"in-context example {example['example_id']!r}"
        if any(t["role"] == "system" for t in example["conversations"]):
            raise ValueError(f"{name} has a system turn")
        for position, item in enumerate(example["media"]):
            found = extracted.get((number, position))
            if item["kind"] != "image":
                raise ValueError(f"{name}: media {position} is a {item['kind']}; only images go into earlier turns")
            if found is None or found["status"] != "ok" or not found["frames"]:
                raise ValueError(f"{name}: frames missing for media {position}")
            media.append(item)
            example_frames.append(found["frames"][:1])
        conversations += example["conversations"]
    conversations += turns[lead:]
    flat = {**sample, "media": media + list(sample["media"]), "conversations": conversations, "in_context": []}
    return flat, example_frames + list(frames)


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


@dataclass(frozen=True)
class ConversationJsonFormat(JsonShardFormat):
    """A JSON format of one conversation a record, with no place for in-context examples:
    ``shards.in_context`` says whether a sample that has them is dropped or has them as earlier
    turns (``with_examples``); subclasses implement ``convert``."""

    in_context: str = "drop"  # shards.in_context

    @classmethod
    def from_settings(cls, settings: Any) -> ConversationJsonFormat:
        return cls(in_context=settings.in_context)

    def convert(self, sample: dict, frames: Frames) -> dict:
        """The record of a sample without in-context examples."""
        raise NotImplementedError

    def record(self, sample: dict, frames: Frames) -> dict:
        return self.convert(*with_examples(sample, frames, self.in_context, self.name))
