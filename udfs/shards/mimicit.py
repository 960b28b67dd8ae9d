"""MIMIC-IT (Otter): per shard, the instructions, train and images files of one task."""
from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

from udfs.sample import stable_hash
from udfs.shards.base import Frames, OpenWriter, ReadFrame, SampleWithFrames, ShardFile, ShardFormat, register_format
from udfs.shards.common import HashingWriter, check_frames, dumps, split_system, without_placeholders

# pandas and pyarrow are imported where used, not at the top: the config imports this package
# for the format names, and they are slow to load.
if TYPE_CHECKING:
    import pyarrow as pa


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
    import pyarrow as pa
    import pyarrow.parquet as pq

    images = pa.BufferOutputStream()
    pq.write_table(artifacts.images, images)
    return [
        (f"{stem}_instructions.json", dumps(artifacts.instructions).encode("utf-8")),
        (f"{stem}_train.json", dumps(artifacts.train).encode("utf-8")),
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
    import pandas as pd
    import pyarrow as pa

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
    check_frames(sample, frames)
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
    system_text, turns = split_system(conversations)
    answer = next((t["content"] for t in turns if t["role"] == "assistant"), None)
    if answer is None:
        raise ValueError("conversation has no assistant turn")
    instruction = "\n".join(part for part in (system_text, without_placeholders(turns[0]["content"])) if part)
    return instruction, answer


@register_format("mimicit")
@dataclass(frozen=True)
class MimicItFormat(ShardFormat):
    # A shard is Otter's triple named after its stem: shard-00000_instructions.json, ...
    extension = ""
    # Otter picks its loader by this id prefix. It only prefixes ids, so checks need no real one.
    task: str = "DC"

    @classmethod
    def from_settings(cls, settings: Any) -> MimicItFormat:
        return cls(task=settings.mimicit_task)

    def check(self, sample: dict, frames: Frames) -> None:
        _mimicit_entries(sample, frames, self.task)

    def write(
        self, uri: str, samples: Sequence[SampleWithFrames], open_writer: OpenWriter, read_frame: ReadFrame
    ) -> list[ShardFile]:
        """Otter's triple named after the stem ``uri``; the instructions file (the first)
        carries the shard's sample count."""
        artifacts = to_mimicit(samples, self.task, read_frame)
        if artifacts.dropped:
            raise ValueError("; ".join(f"{sample_id}: {reason}" for sample_id, reason in artifacts.dropped))
        written = []
        for position, (name, content) in enumerate(mimicit_files(artifacts, uri)):
            with open_writer(name) as raw:
                out = HashingWriter(raw)
                out.write(content)
            written.append(ShardFile(name, len(samples) if position == 0 else 0, out.bytes, out.sha256))
        return written
