"""Trainer-ready records and shard files: formatters, format checks, writers, names and manifests.

Pure Python: callers pass canonical samples (``udfs.sample``), the frames chosen for each media
item, file objects, and (where pixels are embedded) a ``read_frame`` callable. Nothing here
touches Spark or object storage.

``frames`` is always aligned with ``sample["media"]``: one ordered list per media item of frame
dicts ``{frame_index, timestamp_s, path, width, height}``, ``path`` relative to the frames root.
A still image (kind ``image``) is one frame. Formatters raise ``ValueError`` with a reason when
a sample cannot be expressed in the target format; ``format_problem`` turns that into the reason
the tokens stage drops the sample for.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from udfs.sample import MEDIA_TOKEN, stable_hash
from udfs.schemas import SHARDS

Frames = Sequence[Sequence[dict]]
ReadFrame = Callable[[dict], bytes]

# A mimicit shard is Otter's triple named after the shard: shard-00000_instructions.json, ...
SHARD_EXTENSIONS = {"minicpmv": "json", "llava": "json", "webdataset": "tar", "mimicit": ""}
MANIFEST_NAME = "manifest.json"
# What the webdataset json keeps of each media reference and frame.
MEDIA_FIELDS = ("media_id", "kind", "uri", "start_s", "end_s")
FRAME_FIELDS = ("frame_index", "timestamp_s", "path", "width", "height")

# MiniCPM-V's finetune code splits every content on this pattern and looks each match up in "image".
MINICPMV_TAG = re.compile(r"<image_\d+>")
LLAVA_TAGS = {"image": "<image>", "video": "<video>", "frames_dir": "<video>"}
LLAVA_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}
_LLAVA_TAG = re.compile("|".join(map(re.escape, sorted(set(LLAVA_TAGS.values())))))
# webdataset splits a member name at the first dot of its basename, so keys carry no dot.
_SAFE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_PLACEHOLDER = re.compile(r"[ \t]*" + re.escape(MEDIA_TOKEN))


# ---------------------------------------------------------------------------------------------
# Formatters
# ---------------------------------------------------------------------------------------------


def to_minicpmv(sample: dict, frames: Frames) -> dict:
    """The MiniCPM-V multi-image record (T2Vid's training format) of a sample.

    Every frame of every media item, in media order then frame order, gets a tag
    ``<image_NN>`` (two digits, wider for 100 frames or more, the same width for all tags).
    As T2Vid's converter does, the ``<media>`` placeholders leave the first user turn and the
    tags are prepended to it, joined by "\\n". MiniCPM-V's format has no system role: the text of
    the leading system turns goes into the first user turn, after the tags and before the user
    text. Raises ``ValueError`` for a sample without media (the finetune code needs an image),
    for a system turn after the conversation started, and for text that already contains an
    ``<image_N>`` tag (MiniCPM-V would take it for an image).
    """
    _check_frames(sample, frames)
    if not sample["media"]:
        raise ValueError("MiniCPM-V records need at least one image; sample has no media")
    _reject_text_matching(sample["conversations"], MINICPMV_TAG, "a MiniCPM-V image tag")
    paths = [frame["path"] for item_frames in frames for frame in item_frames]
    width = max(2, len(str(len(paths) - 1)))
    tags = [f"<image_{i:0{width}d}>" for i in range(len(paths))]
    system_text, turns = _split_system(sample["conversations"])
    first_user = "\n".join(part for part in (*tags, system_text, _without_placeholders(turns[0]["content"])) if part)
    conversations = [{"role": "user", "content": first_user}]
    conversations += [{"role": t["role"], "content": t["content"]} for t in turns[1:]]
    return {"id": sample["sample_id"], "image": dict(zip(tags, paths)), "conversations": conversations}


def to_llava(sample: dict, frames: Frames) -> dict:
    """The LLaVA-style record of a sample: ``<media>`` becomes ``<image>`` or ``<video>`` in place.

    ``image`` lists the paths of the image media in media order; ``video`` lists the frame paths
    of the one video (kind ``video`` or ``frames_dir``). A reader maps the k-th tag of the text to
    the next entry of the list its tag names, which gives the canonical sample back. LLaVA keys
    one video per record, so a sample with several videos raises ``ValueError``, as does text
    that already contains ``<image>`` or ``<video>`` (the tag count would no longer match).
    A video that was read as a ``video`` list of frame images (media_type "video", all media
    images, their placeholders one newline-joined run) is written back the same way.
    """
    _check_frames(sample, frames)
    media = sample["media"]
    if sum(item["kind"] != "image" for item in media) > 1:
        raise ValueError("LLaVA records hold one video; sample has several")
    _reject_text_matching(sample["conversations"], _LLAVA_TAG, "a LLaVA media tag")
    record: dict[str, Any] = {"id": sample["sample_id"]}
    frames_run = "\n".join([MEDIA_TOKEN] * len(media))
    if (sample.get("media_type") == "video" and media and all(item["kind"] == "image" for item in media)
            and sum(t["content"].count(frames_run) for t in sample["conversations"]) == 1):
        record["video"] = [item_frames[0]["path"] for item_frames in frames]
        tag_media = lambda text: text.replace(frames_run, LLAVA_TAGS["video"])  # noqa: E731
    else:
        images = [item_frames[0]["path"] for item, item_frames in zip(media, frames) if item["kind"] == "image"]
        video = [f["path"] for item, item_frames in zip(media, frames) if item["kind"] != "image" for f in item_frames]
        if images:
            record["image"] = images
        if video:
            record["video"] = video
        tags = iter([LLAVA_TAGS[item["kind"]] for item in media])
        tag_media = lambda text: re.sub(re.escape(MEDIA_TOKEN), lambda _: next(tags), text)  # noqa: E731
    record["conversations"] = [
        {"from": LLAVA_ROLES[t["role"]], "value": tag_media(t["content"])} for t in sample["conversations"]
    ]
    return record


def _check_frames(sample: dict, frames: Frames) -> None:
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


def _reject_text_matching(conversations: Iterable[dict], pattern: re.Pattern, what: str) -> None:
    for turn in conversations:
        found = pattern.search(turn["content"])
        if found:
            raise ValueError(f"{turn['role']} text contains {found.group(0)!r}, read as {what}")


def _split_system(conversations: Sequence[dict]) -> tuple[str, list[dict]]:
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


def _without_placeholders(content: str) -> str:
    return _PLACEHOLDER.sub("", content).strip()


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------


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


@contextmanager
def atomic_file(directory: str, name: str) -> Iterator[HashingWriter]:
    """Write ``directory/name`` through a hidden temporary sibling renamed into place on success.

    ``name`` may hold folders (``shard_name`` does); they are created. Readers never see a
    partial shard; on an exception the temporary file is removed. For object storage, write
    here locally and upload the finished file.
    """
    final = os.path.join(directory, name)
    parent = os.path.dirname(final)
    os.makedirs(parent, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(final)}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            yield HashingWriter(raw)
            raw.flush()
            os.fsync(raw.fileno())
        os.chmod(temporary, 0o644)  # mkstemp creates 0600; shards are meant to be shared
        os.replace(temporary, final)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def write_json_shard(records: Iterable[dict], fileobj: BinaryIO) -> int:
    """Stream ``records`` as one JSON array (UTF-8, one record per line); returns the count.

    MiniCPM-V's and LLaVA's training code ``json.load`` one list per file.
    """
    count = 0
    fileobj.write(b"[")
    for record in records:
        fileobj.write(b",\n" if count else b"\n")
        fileobj.write(_dumps(record).encode("utf-8"))
        count += 1
    fileobj.write(b"\n]\n" if count else b"]\n")
    return count


def _dumps(value: Any) -> str:
    # allow_nan=False: NaN/Infinity are not JSON and break strict readers.
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def check_webdataset(sample: dict, frames: Frames) -> None:
    """Raises ``ValueError`` if the sample cannot be a webdataset key with its frames."""
    if not _SAFE_KEY.fullmatch(sample["sample_id"]):
        raise ValueError(f"sample id {sample['sample_id']!r} is not a webdataset key (letters, digits, _ and - only)")
    _check_frames(sample, frames)


class WebDatasetShardWriter:
    """A deterministic tar shard readable by ``webdataset.WebDataset(url).decode("pil")``.

    Each sample is one key, its ``sample_id``, holding these members (webdataset splits a name
    at the first dot of the basename: the rest is the field name):

    - ``<key>.json`` (field ``json``): ``id``, ``source``, ``media_type``, the canonical
      ``conversations`` (``<media>`` placeholders kept) and ``media``: each media reference with
      its ``frames`` list of ``{field, frame_index, timestamp_s, path, width, height}``;
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
        }
        members[f"{key}.json"] = _dumps(description).encode("utf-8")
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


# ---------------------------------------------------------------------------------------------
# Shard names and manifests
# ---------------------------------------------------------------------------------------------


def shard_dir(model: str, fmt: str) -> str:
    """The folder of one (model, format) output, relative to the output root: ``<model>/<fmt>``."""
    if fmt not in SHARD_EXTENSIONS:
        raise ValueError(f"unknown shard format {fmt!r}; known: {', '.join(sorted(SHARD_EXTENSIONS))}")
    if not model or "/" in model or "\\" in model or model in (".", ".."):
        raise ValueError(f"model name {model!r} is not a single path segment")
    return f"{model}/{fmt}"


def shard_name(model: str, fmt: str, index: int) -> str:
    """``<model>/<fmt>/shard-00000.json`` (``.tar`` for webdataset; for mimicit the stem of
    its three files), relative to the output root."""
    extension = SHARD_EXTENSIONS[fmt]
    return f"{shard_dir(model, fmt)}/shard-{index:05d}{'.' + extension if extension else ''}"


def manifest_json(rows: Sequence[dict], *, model: str, fmt: str, config_fingerprint: str) -> str:
    """The ``manifest.json`` text of one (model, format) output: totals plus one row per shard.

    Rows follow the SHARDS schema's field order and are sorted by ``shard_path``; no timestamps,
    so the same shards give the same text.
    """
    shard_rows = sorted(({name: row[name] for name in SHARDS.names} for row in rows), key=lambda r: r["shard_path"])
    for row in shard_rows:
        if (row["model"], row["format"]) != (model, fmt):
            raise ValueError(f"shard {row['shard_path']} belongs to {row['model']}/{row['format']}, not {model}/{fmt}")
    manifest = {
        "model": model,
        "format": fmt,
        "config_fingerprint": config_fingerprint,
        "shard_count": len(shard_rows),
        "samples": sum(r["samples"] for r in shard_rows),
        "bytes": sum(r["bytes"] for r in shard_rows),
        "token_sum": sum(r["token_sum"] for r in shard_rows),
        "shards": shard_rows,
    }
    return json.dumps(manifest, ensure_ascii=False, indent=2, allow_nan=False) + "\n"


# ---------------------------------------------------------------------------------------------
# MIMIC-IT (Otter)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MimicItArtifacts:
    """Otter's three files of one task, and the samples that could not be expressed."""

    task: str
    instructions: dict  # XX_instructions.json
    train: dict  # XX_train.json
    images: pa.Table  # XX.parquet: index image_id, column base64
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (sample_id, reason)


def mimicit_files(artifacts: MimicItArtifacts, stem: str) -> list[tuple[str, bytes]]:
    """(name, content) of Otter's triple named after ``stem`` (Otter's ``XX``, a path prefix
    works too): ``XX_instructions.json`` first, then ``XX_train.json`` and ``XX.parquet``."""
    images = pa.BufferOutputStream()
    pq.write_table(artifacts.images, images)
    return [
        (f"{stem}_instructions.json", _dumps(artifacts.instructions).encode("utf-8")),
        (f"{stem}_train.json", _dumps(artifacts.train).encode("utf-8")),
        (f"{stem}.parquet", images.getvalue().to_pybytes()),
    ]


def to_mimicit(
    samples_with_frames: Iterable[tuple[dict, Frames]], task: str, read_frame: ReadFrame
) -> MimicItArtifacts:
    """Otter's MIMIC-IT triple for the samples of one task (e.g. ``"DC"``).

    - instruction ids ``<task>_INS_<sample_id>``; image ids ``<task>_IMG_<media_id>_<frame_index:04d>``
      in media then frame order (Otter resamples video-like tasks from these);
    - instruction = the first user turn without ``<media>``, led by the text of any leading
      system turns (Otter has no system role); answer = the first assistant turn; later turns
      are not part of MIMIC-IT's single exchange and are left out;
    - in-context examples become instructions of their own (``<task>_INS_<hash of id and text>``,
      no images: Otter only shows the query's images) listed in ``rel_ins_ids`` and in
      ``XX_train.json``, whose keys are the query ids only.
    The images table has the JPEG bytes in URL-safe base64, one row per image id, sorted, with
    ``image_id`` as the pandas index (Otter reads it with ``pd.read_parquet(...).loc[id]``).
    A sample that raises ``ValueError`` is listed in ``dropped``; read errors propagate.
    """
    if not re.fullmatch(r"[A-Za-z0-9]+", task):
        raise ValueError(f"task name {task!r} must be letters and digits (ids use '_' as separator)")
    data: dict[str, dict] = {}
    train: dict[str, list[str]] = {}
    images: dict[str, str] = {}
    dropped: list[tuple[str, str]] = []
    for sample, frames in samples_with_frames:
        try:
            query_id, query, examples = _mimicit_entries(sample, frames, task)
            if query_id in data:
                raise ValueError("sample seen twice in this task")
        except ValueError as error:
            dropped.append((sample["sample_id"], str(error)))
            continue
        flat_frames = [frame for item_frames in frames for frame in item_frames]
        for image_id, frame in zip(query["image_ids"], flat_frames):
            if image_id not in images:
                images[image_id] = base64.urlsafe_b64encode(read_frame(frame)).decode("ascii")
        data[query_id] = query
        data.update(examples)
        train[query_id] = list(query["rel_ins_ids"])
    image_ids = sorted(images)
    table_frame = pd.DataFrame({"base64": [images[i] for i in image_ids]}, index=pd.Index(image_ids, name="image_id"))
    return MimicItArtifacts(
        task=task,
        instructions={"meta": {"version": "0.0.1", "author": "framelake", "task": task}, "data": data},
        train=train,
        images=pa.Table.from_pandas(table_frame, preserve_index=True),
        dropped=dropped,
    )


def _mimicit_entries(sample: dict, frames: Frames, task: str) -> tuple[str, dict, dict[str, dict]]:
    """The query's id and entry, and the entries of its in-context examples by id."""
    _check_frames(sample, frames)
    image_ids = [
        f"{task}_IMG_{item['media_id']}_{frame['frame_index']:04d}"
        for item, item_frames in zip(sample["media"], frames)
        for frame in item_frames
    ]
    examples = {}
    for example in sample["in_context"]:
        instruction, answer = _first_exchange(example["conversations"])
        example_id = f"{task}_INS_{stable_hash('in_context', example['example_id'], instruction, answer)}"
        examples[example_id] = {"instruction": instruction, "answer": answer, "image_ids": [], "rel_ins_ids": []}
    instruction, answer = _first_exchange(sample["conversations"])
    query = {"instruction": instruction, "answer": answer, "image_ids": image_ids, "rel_ins_ids": list(examples)}
    return f"{task}_INS_{sample['sample_id']}", query, examples


def _first_exchange(conversations: Sequence[dict]) -> tuple[str, str]:
    system_text, turns = _split_system(conversations)
    answer = next((t["content"] for t in turns if t["role"] == "assistant"), None)
    if answer is None:
        raise ValueError("conversation has no assistant turn")
    instruction = "\n".join(part for part in (system_text, _without_placeholders(turns[0]["content"])) if part)
    return instruction, answer


# ---------------------------------------------------------------------------------------------
# Which formats can hold a sample
# ---------------------------------------------------------------------------------------------

# Each check raises ValueError where the format's writer would. MIMIC-IT's task name only
# prefixes ids, so any valid one serves for the check.
FORMAT_CHECKS: dict[str, Callable[[dict, Frames], Any]] = {
    "minicpmv": to_minicpmv,
    "llava": to_llava,
    "webdataset": check_webdataset,
    "mimicit": lambda sample, frames: _mimicit_entries(sample, frames, "CHECK"),
}


def format_problem(sample: dict, frames: Frames, formats: Iterable[str]) -> str | None:
    """Why the first of ``formats`` that cannot express ``sample`` refuses it, or None.

    The tokens stage drops such a sample for the model, so every format of a model holds the
    same samples and no writer meets a sample it cannot write.
    """
    for fmt in formats:
        try:
            FORMAT_CHECKS[fmt](sample, frames)
        except ValueError as err:
            return f"not expressible as {fmt}: {err}"
    return None
