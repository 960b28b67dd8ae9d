"""Source adapters on the fixture files (tests/fixtures/formats/<format>/): a context whose
media root is a fake S3 prefix and whose inline images go to a temp folder, the normalize loop
run over files, and what the tests read out of its rows."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from PIL import Image

from tests.support.paths import FORMATS
from udfs.adapters import NormalizeContext, SourceSpec, get_adapter
from udfs.normalize import normalize_unit
from udfs.schemas import REJECTS, SAMPLES

MEDIA_ROOT = "s3://media/root"


@dataclass
class Run:
    samples: list[dict]
    rejects: list[dict]

    def outcomes(self, file_name: str) -> dict[int, tuple[str, dict]]:
        """record index -> ("sample", row) or ("reject", row), for one source file."""
        rows = [("sample", r) for r in self.samples] + [("reject", r) for r in self.rejects]
        found: dict[int, tuple[str, dict]] = {}
        for kind, row in rows:
            if Path(row["source_file"]).name == file_name:
                assert row["record_index"] not in found, f"record {row['record_index']} gave two rows"
                found[row["record_index"]] = (kind, row)
        return found

    def reasons(self, file_name: str) -> dict[int, str]:
        return {i: row["reason"] for i, (kind, row) in self.outcomes(file_name).items() if kind == "reject"}

    def sample(self, file_name: str, index: int) -> dict:
        kind, row = self.outcomes(file_name)[index]
        assert kind == "sample", row.get("reason")
        return row


def context(tmp_path: Path, fmt: str, media_type: str | None = None, options: dict | None = None,
            annotations: Path | None = None, media_root: str = MEDIA_ROOT, name: str | None = None) -> NormalizeContext:
    inline = tmp_path / "inline"
    inline.mkdir(exist_ok=True)

    def put_inline(data: bytes, ext: str) -> str:
        path = inline / f"{hashlib.sha256(data).hexdigest()}.{ext}"
        path.write_bytes(data)
        return str(path)

    spec = SourceSpec(
        name=name or f"{fmt}-fixture",
        format=fmt,
        annotations=str(annotations or FORMATS / fmt),
        media_root=media_root,
        media_type=media_type,
        options=options or {},
    )
    return NormalizeContext(spec=spec, open_binary=open_from, put_inline=put_inline)


def open_from(uri: str, offset: int = 0):
    stream = open(uri, "rb")
    stream.seek(offset)
    return stream


def normalize_files(files: list[Path], ctx: NormalizeContext) -> Run:
    adapter = get_adapter(ctx.spec.format)
    run = Run([], [])
    for unit in adapter.plan([str(f) for f in files]):
        for kind, row in normalize_unit(adapter, unit, ctx):
            (run.samples if kind == "sample" else run.rejects).append(row)
    # the rows must fit the table schemas exactly
    pa.Table.from_pylist(run.samples, schema=SAMPLES)
    pa.Table.from_pylist(run.rejects, schema=REJECTS)
    return run


def normalize_fixture(tmp_path: Path, fmt: str, *names: str, **spec) -> Run:
    return normalize_files([FORMATS / fmt / name for name in names], context(tmp_path, fmt, **spec))


def conv(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in turns]


def media_of(row: dict) -> list[tuple]:
    return [(m["kind"], m["uri"], m["start_s"], m["end_s"]) for m in row["media"]]


def under_root(path: str) -> str:
    return f"{MEDIA_ROOT}/{path}"


def stored_image(uri: str) -> tuple[str, tuple[int, int]]:
    with Image.open(uri) as image:
        return image.format, image.size


def frames_of(sample: dict) -> list[list[dict]]:
    """Frames as the shards stage passes them: an image is one frame at its own path (under
    the media root), a video or frames folder two frames."""
    frames = []
    for item in sample["media"]:
        path = item["uri"].removeprefix(MEDIA_ROOT + "/").rstrip("/")
        paths = [path] if item["kind"] == "image" else [f"{path}/{k:05d}.jpg" for k in range(2)]
        frames.append([{"frame_index": k, "timestamp_s": float(k), "path": p, "width": 4, "height": 4}
                       for k, p in enumerate(paths)])
    return frames


def round_trip(tmp_path: Path, fmt: str, emit, samples: list[dict]) -> list[tuple[dict, dict]]:
    """(record emitted from a sample, record emitted again after normalizing the first), ids left out."""
    emitted = [emit(sample, frames_of(sample)) for sample in samples]
    path = tmp_path / f"emitted_{fmt}.json"
    path.write_text(json.dumps(emitted, ensure_ascii=False), encoding="utf-8")
    again = normalize_files([path], context(tmp_path, fmt))
    assert again.rejects == [] and len(again.samples) == len(samples)
    without_id = lambda record: {k: v for k, v in record.items() if k != "id"}  # noqa: E731
    return [(without_id(first), without_id(emit(sample, frames_of(sample))))
            for first, sample in zip(emitted, again.samples)]
