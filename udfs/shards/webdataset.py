"""WebDataset tar shards: one key per sample, its description and its JPEG frames."""
from __future__ import annotations

import io
import re
import tarfile
from typing import BinaryIO, Sequence

from udfs.shards.base import Frames, OpenWriter, ReadFrame, SampleWithFrames, ShardFile, ShardFormat, register_format
from udfs.shards.common import HashingWriter, check_frames, dumps

# What the webdataset json keeps of each media reference and frame.
MEDIA_FIELDS = ("media_id", "kind", "uri", "start_s", "end_s")
FRAME_FIELDS = ("frame_index", "timestamp_s", "path", "width", "height")
# webdataset splits a member name at the first dot of its basename, so keys carry no dot.
_SAFE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def check_webdataset(sample: dict, frames: Frames) -> None:
    """Raises ``ValueError`` if the sample cannot be a webdataset key with its frames."""
    if not _SAFE_KEY.fullmatch(sample["sample_id"]):
        raise ValueError(f"sample id {sample['sample_id']!r} is not a webdataset key (letters, digits, _ and - only)")
    check_frames(sample, frames)


class WebDatasetShardWriter:
    """A deterministic tar shard readable by ``webdataset.WebDataset(url).decode("pil")``.

    Each sample is one key, its ``sample_id``, holding these members (webdataset splits a name
    at the first dot of the basename: the rest is the field name):

    - ``<key>.json`` (field ``json``): ``id``, ``source``, ``media_type``, the canonical
      ``conversations`` (``<media>`` placeholders kept), ``media``: each media reference with
      its ``frames`` list of ``{field, frame_index, timestamp_s, path, width, height}``, and
      ``in_context``: the in-context examples (MIMIC-IT), each its ``example_id``,
      ``conversations`` and ``media`` references (their pixels are not in the tar);
    - ``<key>.000.jpg``, ``<key>.001.jpg``, ... (fields ``000.jpg``, ...): the JPEG frames of all
      media items, in media order then frame order, numbered with three digits (wider for 1000
      frames or more, the same width within a sample). ``field`` in the json names each one.

    Members of a sample are sorted by name; samples keep the order of ``write`` calls. Headers
    carry mtime 0, uid/gid 0 and mode 0644, so the same samples give the same bytes.
    ``fileobj`` only needs ``write`` (the tar is streamed); it is not closed.
    """

    def __init__(self, fileobj: BinaryIO) -> None:
        self._tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
        self._keys: set[str] = set()

    @property
    def samples(self) -> int:
        return len(self._keys)

    def write(self, sample: dict, frames: Frames, read_frame: ReadFrame) -> None:
        """Add one sample; raises ``ValueError`` (shard left intact) if it cannot be stored."""
        key = sample["sample_id"]
        check_webdataset(sample, frames)
        if key in self._keys:
            raise ValueError(f"sample id {key!r} written twice to one shard")
        width = max(3, len(str(sum(map(len, frames)) - 1)))
        members: dict[str, bytes] = {}
        media = []
        for item, item_frames in zip(sample["media"], frames):
            described = []
            for frame in item_frames:
                field_name = f"{len(members):0{width}d}.jpg"
                # Everything is read before the first member is written: a failing read leaves no partial sample.
                members[f"{key}.{field_name}"] = read_frame(frame)
                described.append({"field": field_name, **{name: frame[name] for name in FRAME_FIELDS}})
            media.append({**{name: item[name] for name in MEDIA_FIELDS}, "frames": described})
        description = {
            "id": key,
            "source": sample["source"],
            "media_type": sample["media_type"],
            "conversations": [{"role": t["role"], "content": t["content"]} for t in sample["conversations"]],
            "media": media,
            "in_context": [
                {"example_id": example["example_id"], "conversations": example["conversations"],
                 "media": [{name: item[name] for name in MEDIA_FIELDS} for item in example["media"]]}
                for example in sample.get("in_context") or []
            ],
        }
        members[f"{key}.json"] = dumps(description).encode("utf-8")
        for name in sorted(members):
            self._add(name, members[name])
        self._keys.add(key)

    def _add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = 0
        info.mode = 0o644
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        self._tar.addfile(info, io.BytesIO(data))

    def close(self) -> None:
        self._tar.close()

    def __enter__(self) -> "WebDatasetShardWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@register_format("webdataset")
class WebDatasetFormat(ShardFormat):
    extension = ".tar"

    def check(self, sample: dict, frames: Frames) -> None:
        check_webdataset(sample, frames)

    def write(
        self, uri: str, samples: Sequence[SampleWithFrames], open_writer: OpenWriter, read_frame: ReadFrame
    ) -> list[ShardFile]:
        with open_writer(uri) as raw:
            out = HashingWriter(raw)
            with WebDatasetShardWriter(out) as tar:
                for sample, frames in samples:
                    tar.write(sample, frames, read_frame)
        return [ShardFile(uri, tar.samples, out.bytes, out.sha256)]
