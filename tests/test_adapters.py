"""Source adapters, streaming readers and the normalize loop, on fixture files written from
the source formats (/work/shared/FORMATS.md) plus broken and hostile records."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from udfs.adapters import NormalizeContext, RawRecord, SourceSpec, get_adapter, known_formats
from udfs.adapters.common import decode_base64_image
from udfs.adapters.readers import (
    Split,
    read_json_array,
    read_json_object,
    read_jsonl,
    read_records,
    read_split,
    scan_splits,
)
from framelake.storage import ObjectInfo
from udfs.normalize import normalize_unit, plan_run
from udfs.sample import sample_id
from udfs.schemas import REJECTS, SAMPLES
from udfs.shards import to_llava, to_minicpmv

FIXTURES = Path(__file__).parent / "fixtures" / "formats"
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


def context(tmp_path: Path, fmt: str, media_type: str | None = None, options: dict | None = None) -> NormalizeContext:
    inline = tmp_path / "inline"
    inline.mkdir(exist_ok=True)

    def put_inline(data: bytes, ext: str) -> str:
        path = inline / f"{hashlib.sha256(data).hexdigest()}.{ext}"
        path.write_bytes(data)
        return str(path)

    spec = SourceSpec(
        name=f"{fmt}-fixture",
        format=fmt,
        annotations=str(FIXTURES / fmt),
        media_root=MEDIA_ROOT,
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
    return normalize_files([FIXTURES / fmt / name for name in names], context(tmp_path, fmt, **spec))


def conv(*turns: tuple[str, str]) -> list[dict]:
    return [{"role": role, "content": content} for role, content in turns]


def media_of(row: dict) -> list[tuple]:
    return [(m["kind"], m["uri"], m["start_s"], m["end_s"]) for m in row["media"]]


def under_root(path: str) -> str:
    return f"{MEDIA_ROOT}/{path}"


def records(data: bytes, reader=read_records, **kwargs) -> list[RawRecord]:
    return list(reader(io.BytesIO(data), **kwargs))


# --- readers -------------------------------------------------------------------------------


def test_json_array_reader_resumes_after_a_malformed_element():
    data = '\ufeff[{"a": 1}, {"b": "x" "c": 2}, {"d": [1, "]", {"e": null}]} , 3]'.encode()
    got = records(data, read_json_array)
    assert [r.index for r in got] == [0, 1, 2, 3]
    assert [r.value for r in got] == [{"a": 1}, None, {"d": [1, "]", {"e": None}]}, 3]
    assert got[1].error == "invalid JSON: Expecting ',' delimiter (offset 10)"
    assert got[1].text == '{"b": "x" "c": 2}'
    assert got[2].text == '{"d": [1, "]", {"e": null}]}'
    assert all(r.error is None for r in (got[0], got[2], got[3]))


def test_json_array_reader_gives_one_final_error_when_the_structure_is_lost():
    got = records(b'[{"a": 1}, {"b": "never closed}, {"c": 3}]')
    assert [r.value for r in got] == [{"a": 1}, None]
    assert got[1].error.endswith("the JSON structure is lost, the rest of the file is skipped")
    assert got[1].text == '{"b": "never closed}, {"c": 3}]'


def test_json_array_reader_reports_truncation_and_trailing_data():
    truncated = records(b'[{"a": 1}, {"b": 2}')
    assert [(r.value, r.error) for r in truncated] == [
        ({"a": 1}, None),
        ({"b": 2}, None),
        (None, "JSON array not closed: file truncated?"),
    ]
    trailing = records(b'[1, 2] {"x": 1}')
    assert [(r.index, r.value, r.error) for r in trailing] == [
        (0, 1, None),
        (1, 2, None),
        (2, None, "invalid JSON: unexpected data after the top-level value"),
    ]
    assert records(b"[1, 2, ]\n") == records(b"[1, 2]")  # a trailing comma loses nothing
    assert records(b"[ ]") == [] and records(b"") == []


def test_json_array_reader_gives_the_same_records_at_any_chunk_size():
    elements = [{"i": i, "text": 'é"\\n😀' * (i % 5), "nested": [[i], {"k": "]}"}]} for i in range(300)]
    data = json.dumps(elements, ensure_ascii=False, indent=1).encode()
    for chunk_size in (1, 7, 64, 1 << 20):
        got = records(data, read_json_array, chunk_size=chunk_size)
        assert [r.value for r in got] == elements
        assert [json.loads(r.text) for r in got] == elements


def test_jsonl_reader_skips_blank_lines_and_reports_bad_lines():
    data = b'\xef\xbb\xbf{"a": 1}\r\n\n   \n{"b": \n[1, 2]\n{"c": 3} 4\n{"d": 4}'
    got = records(data, read_jsonl)
    assert [(r.index, r.value) for r in got] == [(0, {"a": 1}), (1, None), (2, [1, 2]), (3, None), (4, {"d": 4})]
    assert got[1].error.startswith("invalid JSON line: Expecting value")
    assert got[3].error == "invalid JSON line: unexpected data after the value (offset 9)"


def test_read_records_detects_json_lines_behind_a_json_name_and_rejects_a_document():
    lines = (FIXTURES / "llava" / "llava_lines.json").read_bytes()
    assert [r.value["id"] for r in records(lines)] == ["l1", "l2"]
    document = records(b'{\n  "data": [1, 2]\n}\n')
    assert len(document) == 1
    assert document[0].error == "expected a JSON array or JSON lines, found a JSON document"


def test_invalid_utf8_spoils_only_its_record():
    got = records(b'[{"a": "caf\xe9"}, {"b": "ok \xc3\xa9"}]')
    assert got[0].error == "invalid UTF-8" and got[0].text == '{"a": "caf\ufffd"}'
    assert got[1].value == {"b": "ok é"}
    got = records(b'{"a": "\xff"}\n{"b": 1}\n', read_jsonl)
    assert [(r.value, r.error) for r in got] == [(None, "invalid UTF-8"), ({"b": 1}, None)]


def test_json_object_reader_streams_the_records_of_a_field():
    data = b'{"meta": {"version": "0.0.1"}, "data": {"K1": {"x": 1}, "K2": [2], 5: 6, "K3": {"x": 3}}, "z": 1}'
    got = records(data, read_json_object, field="data", chunk_size=3)
    assert [(r.index, r.key, r.value) for r in got] == [
        (0, "K1", {"x": 1}),
        (1, "K2", [2]),
        (2, None, None),
        (3, "K3", {"x": 3}),
    ]
    assert got[2].error.startswith("invalid JSON: malformed object member")
    missing = records(b'{"meta": {}}', read_json_object, field="data")
    assert [r.error for r in missing] == ["no 'data' object in the JSON document"]
    flat = records(b'{"img_1": "QUJD", "img_2": "REVG"}', read_json_object)
    assert [(r.key, r.value) for r in flat] == [("img_1", "QUJD"), ("img_2", "REVG")]


SPLIT_CASES = [
    '\ufeff[{"a": 1}, {"b": "x" "c": 2}, {"d": [1, "]", {"e": null}]} , 3]'.encode(),
    b'[{"a": 1}, {"b": "never closed}, {"c": 3}]',
    b'[{"a": 1}, {"b": 2}',
    b'[1, 2] {"x": 1}',
    b"[1, 2, ]\n",
    b"[ ]",
    b"",
    b'\xef\xbb\xbf{"a": 1}\r\n\n   \n{"b": \n[1, 2]\n{"c": 3} 4\n{"d": 4}',
    b'[{"a": "caf\xe9"}, {"b": "ok \xc3\xa9"}]',
    b'{"a": "\xff"}\n\xef\xbb\xbf\n\xef\xbb\xbf{"b": 1}\n',
    b'{\n  "data": [1, 2]\n}\n',
    json.dumps([{"i": i, "t": 'é"\\n😀' * (i % 5), "n": [[i], {"k": "]}"}]} for i in range(120)],
               ensure_ascii=False, indent=1).encode(),
    "\n".join(json.dumps({"i": i, "t": "ü" * i}, ensure_ascii=False) + ("\n \t\n" * (i % 7 == 0)) for i in range(90)).encode(),
]


@pytest.mark.parametrize("data", SPLIT_CASES, ids=range(len(SPLIT_CASES)))
def test_splits_give_the_records_of_the_whole_file(data):
    whole = records(data)
    for split_bytes in (1, 9, 64, 700, 1 << 30):
        for chunk_size in (1, 5, 1 << 20):
            splits = scan_splits(io.BytesIO(data), split_bytes, chunk_size=chunk_size)
            got = []
            for split in splits:
                stream = io.BytesIO(data)
                stream.seek(split.offset)
                got += read_split(stream, split, chunk_size=chunk_size)
            assert got == whole, (split_bytes, chunk_size, splits)
            assert records(data, chunk_size=chunk_size) == whole


def test_splits_start_at_records_about_split_bytes_apart():
    lines = [json.dumps({"n": i, "text": "x" * (i % 50)}) for i in range(1000)]
    data = ("\n".join(lines) + "\n").encode()
    splits = scan_splits(io.BytesIO(data), 4096, chunk_size=1000)
    assert [s.first_index for s in splits] == [0] + [data.count(b"\n", 0, s.offset) for s in splits[1:]]
    assert all(data[s.offset - 1 : s.offset] == b"\n" for s in splits[1:])
    sizes = [b.offset - a.offset for a, b in zip(splits, splits[1:])]
    assert all(4096 <= size < 4096 + 120 for size in sizes)
    assert sum(s.count for s in splits[:-1]) == splits[-1].first_index and splits[-1].count is None
    array = json.dumps([json.loads(line) for line in lines]).encode()
    (only,) = scan_splits(io.BytesIO(array), len(array))
    assert only == Split(0, 0, None, "array")
    splits = scan_splits(io.BytesIO(array), 4096)
    assert len(array) // (4096 + 120) <= len(splits) - 1 <= len(array) // 4096
    assert all(array[s.offset : s.offset + 6] == b'{"n": ' for s in splits[1:])


# --- adapters ------------------------------------------------------------------------------


def test_known_formats():
    assert known_formats() == [
        "conversations_jsonl",
        "llava",
        "m3it",
        "mimicit",
        "minicpmv",
        "t2vid_text",
        "videochat2",
        "videoinstruct100k",
    ]


def test_videochat2_video_records(tmp_path):
    run = normalize_fixture(tmp_path, "videochat2", "ego_qa_train.json")
    name = "ego_qa_train.json"
    first = run.sample(name, 0)
    assert first["conversations"] == conv(
        (
            "system",
            "Review the shown video, detailing observations on objects ... select the most accurate answer from the choices provided.",
        ),
        (
            "user",
            "<media>\nQuestion: What is the color of the object that enters the scene?\nOptions:\n(A) red\n(B) purple\n(C) blue\n(D) gray",
        ),
        ("assistant", "Answer: (B) purple"),
    )
    assert media_of(first) == [("video", under_root("video_05028.mp4"), None, None)]
    assert (first["format"], first["source"], first["media_type"], first["language"]) == (
        "videochat2",
        "videochat2-fixture",
        "video",
        None,
    )
    assert first["sample_id"] == sample_id("videochat2-fixture", name, 0)
    assert json.loads(first["raw"])["video"] == "video_05028.mp4"

    caption = run.sample(name, 1)
    assert caption["conversations"] == conv(("user", "<media>"), ("assistant", "A man slices bread on a wooden board."))
    assert media_of(caption) == [("video", under_root("clips/caption_01.mp4"), 2.5, 7.0)]

    multi_turn = run.sample(name, 2)
    assert multi_turn["conversations"] == conv(
        ("system", "Répondez en français."),
        ("user", "<media>\nQue fait la personne ? 🎬"),
        ("assistant", "Elle coupe du pain."),
        ("user", "Et ensuite ?"),
        ("assistant", "Elle sert le café ☕."),
    )
    assert media_of(multi_turn) == [("video", under_root("日本/動画 01.mp4"), None, None)]

    gif = run.sample(name, 10)
    assert media_of(gif) == [("video", under_root("tgif/tumblr_nk172bbdPI1u1lr18o1_250.gif"), None, None)]
    assert gif["conversations"] == conv(
        ("system", "Describe the GIF."), ("user", "<media>"), ("assistant", "A cat jumps.")
    )

    assert run.reasons(name) == {
        3: "invalid JSON: Expecting ',' delimiter (offset 62)",
        4: "absolute media path not allowed: '/etc/passwd'",
        5: "media path escapes media_root: 'clips/../../secret/video.mp4'",
        6: "QA must be an array, got an object",
        7: "QA[0].a must be a string, got a number",
        8: "turn 1: empty assistant turn",
        9: "unexpected media tag <video> in QA[0].q",
        11: "clip start must be a number, got 'soon'",
        12: "record must be an object, got a string",
        13: "turn 2: empty user turn",
        14: "unexpected media tag <video> in QA[0].q",
    }
    assert (
        run.outcomes(name)[3][1]["raw"] == '{"video": "broken.mp4", "QA": [{"i": "", "q": "missing comma" "a": "y"}]}'
    )


def test_videochat2_media_kind_from_the_key_or_the_source_media_type(tmp_path):
    name = "m3it_image_train.json"
    by_key = normalize_fixture(tmp_path, "videochat2", name)
    assert media_of(by_key.sample(name, 0)) == [("image", under_root("coco/000000000001.jpg"), None, None)]
    assert by_key.sample(name, 0)["media_type"] == "images"
    assert media_of(by_key.sample(name, 1)) == [("video", under_root("tgif/loop.gif"), None, None)]
    assert by_key.reasons(name) == {2: "clip bounds given for an image"}

    forced_video = normalize_fixture(tmp_path, "videochat2", name, media_type="video")
    assert [m[0] for s in forced_video.samples for m in media_of(s)] == ["video", "video", "video"]
    assert media_of(forced_video.sample(name, 2)) == [("video", under_root("coco/000000000002.jpg"), 1.0, 2.0)]

    text_only = normalize_fixture(tmp_path, "videochat2", name, media_type="text")
    assert text_only.samples == []
    assert set(text_only.reasons(name).values()) == {"'image' given in a text-only source"}


def test_videochat2_truncated_file(tmp_path):
    run = normalize_fixture(tmp_path, "videochat2", "truncated.json")
    assert run.sample("truncated.json", 0)["conversations"] == conv(("user", "<media>\nQ"), ("assistant", "A"))
    reasons = run.reasons("truncated.json")
    assert list(reasons) == [1]
    assert reasons[1].startswith("invalid JSON: Expecting ',' delimiter")
    assert reasons[1].endswith("the rest of the file is skipped")


def test_videoinstruct100k_raw_and_converted(tmp_path):
    run = normalize_fixture(tmp_path, "videoinstruct100k", "VideoInstruct_Dataset.json", "video_chatgpt_training.json")
    raw, converted = "VideoInstruct_Dataset.json", "video_chatgpt_training.json"
    answer = "The man is lifting weights in a gym, performing a series of squats."
    assert run.sample(raw, 0)["conversations"] == conv(
        ("user", "<media>\nWhat is the man doing in the video?"), ("assistant", answer)
    )
    assert media_of(run.sample(raw, 0)) == [("video", under_root("v_mTDRTiTnsjQ.mp4"), None, None)]
    assert media_of(run.sample(raw, 2)) == [("video", under_root("v_k2bW1z8C0pE.mkv"), None, None)]
    # several questions per video: keyed by index, not by the shared video id
    assert run.sample(raw, 0)["sample_id"] != run.sample(raw, 1)["sample_id"]
    assert run.reasons(raw) == {
        3: "media path escapes media_root: '../v_escape.mp4'",
        4: "video_id must be a string, got a number",
        5: "missing key 'a'",
        7: "turn 1: empty assistant turn",
        8: "absolute media path not allowed: '/abs/v_absolute.mp4'",
    }
    # the converter puts <video> after the question on even records, before it on odd ones
    assert run.sample(converted, 0)["conversations"] == conv(
        ("user", "What is the man doing in the video?\n<media>"), ("assistant", answer)
    )
    assert run.sample(converted, 1)["conversations"] == conv(
        ("user", "<media>\nWhere does the video take place?"), ("assistant", "In a gym.")
    )
    assert media_of(run.sample(converted, 1)) == [("video", under_root("v_mTDRTiTnsjQ.mp4"), None, None)]
    assert run.reasons(converted) == {
        2: "unbalanced media tags: 2 tags for 1 media",
        3: "conversations[0].from: unknown role 'bot'",
    }

    webm = normalize_fixture(tmp_path, "videoinstruct100k", converted, options={"video_ext": "webm"})
    assert media_of(webm.sample(converted, 0)) == [("video", under_root("v_mTDRTiTnsjQ.webm"), None, None)]


def test_conversations_jsonl_roles_by_position(tmp_path):
    run = normalize_fixture(tmp_path, "conversations_jsonl", "webvid_core100k.jsonl", "longalpaca_chat_fake_vid.json")
    jsonl = "webvid_core100k.jsonl"
    assert run.sample(jsonl, 0)["conversations"] == conv(
        ("user", "<media>\nDescribe this video in detail."),
        ("assistant", "A drone flies over a snowy forest at sunrise."),
    )
    assert media_of(run.sample(jsonl, 0)) == [("video", under_root("webvid/1066692580.mp4"), None, None)]
    # "from" is ignored: position decides; no tag: the placeholder is prepended
    assert run.sample(jsonl, 1)["conversations"] == conv(
        ("user", "<media>\nWhat colour is the car?"), ("assistant", "Red.")
    )
    assert run.sample(jsonl, 2)["conversations"] == conv(
        ("user", "First look at this <media> then answer: who wins?"),
        ("assistant", "The runner in blue."),
        ("user", "By how much?"),
        ("assistant", "About one metre."),
    )
    reasons = run.reasons(jsonl)
    assert reasons.pop(5).startswith("invalid JSON line: Expecting ','")
    assert reasons == {
        3: "unbalanced media tags: 2 tags for 1 media",
        4: "media placeholders outside the first user turn",
        6: "unexpected media tag <image>",
        7: "conversation does not end with an assistant turn",
        9: "turn 1: empty assistant turn",
        10: "absolute media path not allowed: '/mnt/webvid/16.mp4'",
        11: "media path escapes media_root: '../../etc/17.mp4'",
    }
    fake_video = run.sample("longalpaca_chat_fake_vid.json", 0)
    assert media_of(fake_video) == [("frames_dir", under_root("LongAlpaca-pics/LongAlpaca_00001"), None, None)]
    assert fake_video["conversations"][0] == {
        "role": "user",
        "content": "<media>\nSummarize the paper shown in the video.",
    }


def test_llava_media_and_tags(tmp_path):
    run = normalize_fixture(tmp_path, "llava", "llava_mix.json", "llava_lines.json")
    name = "llava_mix.json"
    bus = run.sample(name, 0)
    assert bus["conversations"] == conv(
        ("user", "<media>\nWhat are the colors of the bus in the image?"),
        ("assistant", "The bus in the image is white and red."),
        ("user", "What feature can be seen on the back of the bus?"),
        ("assistant", "The back of the bus features an advertisement."),
    )
    assert media_of(bus) == [("image", under_root("coco/train2017/000000033471.jpg"), None, None)]
    assert bus["media_type"] == "images"
    assert bus["sample_id"] == sample_id("llava-fixture", name, "000000033471")
    # the same id again in the file: a distinct, stable sample id
    assert run.sample(name, 11)["sample_id"] not in {
        bus["sample_id"],
        sample_id("llava-fixture", name, 11),
    }

    assert run.sample(name, 1)["conversations"][0] == {"role": "user", "content": "<media>\nWhat is it?"}
    pair = run.sample(name, 2)
    assert pair["conversations"][0] == {"role": "user", "content": "Compare <media> and <media>."}
    assert media_of(pair) == [
        ("image", under_root("pairs/left.jpg"), None, None),
        ("image", under_root("pairs/right.jpg"), None, None),
    ]
    video = run.sample(name, 3)
    assert video["conversations"][:2] == conv(
        ("system", "You are a helpful assistant."), ("user", "<media>\nWhat is cooked?")
    )
    assert media_of(video) == [("video", under_root("videos/cooking.mp4"), None, None)]
    frames = run.sample(name, 4)
    assert frames["media_type"] == "video"
    assert frames["conversations"][0] == {"role": "user", "content": "<media>\n<media>\n<media>\nWhat happens?"}
    assert media_of(frames) == [("image", under_root(f"frames/v1/000{i}.jpg"), None, None) for i in (1, 2, 3)]
    text = run.sample(name, 5)
    assert (text["media"], text["media_type"]) == ([], "text")
    assert media_of(run.sample(name, 8)) == [("frames_dir", under_root("frames/v2"), None, None)]
    assert run.reasons(name) == {
        6: "unbalanced media tags: 2 tags for 1 media",
        7: "unbalanced media tags: 1 tags for 0 media",
        9: "absolute media path not allowed: '/data/coco/1.jpg'",
        10: "conversations[0].value must be a string, got an array",
        12: "media placeholders outside the first user turn",
        13: "conversations[0].value contains the reserved placeholder '<media>'",
        14: "video list holds a video file 'a.mp4'; expected frame images",
        16: "turn 1: empty assistant turn",
        17: "unbalanced media tags: 2 tags for 1 media",
        18: "media path escapes media_root: 'coco/../../secret.jpg'",
    }
    assert run.sample("llava_lines.json", 1)["conversations"][0] == {"role": "user", "content": "Q2 <media>"}


@pytest.mark.parametrize(("media_type", "label"), [(None, "images"), ("video", "video")])
def test_minicpmv_indexed_image_tags(tmp_path, media_type, label):
    name = "minicpmv_t2vid.json"
    run = normalize_fixture(tmp_path, "minicpmv", name, media_type=media_type)
    frames = run.sample(name, 0)
    assert frames["conversations"] == conv(
        ("user", "<media>\n<media>\nWhat happens?"), ("assistant", "A person pours water into a glass.")
    )
    assert media_of(frames) == [
        ("image", under_root("path/to/frame_0.jpg"), None, None),
        ("image", under_root("path/to/frame_1.jpg"), None, None),
    ]
    assert frames["media_type"] == label
    assert run.sample(name, 1)["conversations"][0] == {"role": "user", "content": "<media>\nWhat is this?"}
    single = run.sample(name, 2)
    assert single["conversations"] == conv(("user", "Look: <media> — what colour?"), ("assistant", "Green."))
    assert media_of(single) == [("image", under_root("coco/4.jpg"), None, None)]
    assert run.reasons(name) == {
        3: "media tag <image_02> not found in image",
        4: "unbalanced media tags: image entry '<image_01>' has no tag",
        5: "unexpected media tag <video>",
        6: "image must be a path or an object of paths, got a number",
        7: "conversations[0].role: unknown role 'human'",
        8: "turn 1: empty assistant turn",
        9: "unexpected media tag <video>",
        10: "absolute media path not allowed: '/data/f/0.jpg'",
        11: "media path escapes media_root: '../f/0.jpg'",
    }


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


ROUND_TRIPS = [("llava", to_llava, "llava_mix.json"), ("minicpmv", to_minicpmv, "minicpmv_t2vid.json")]


@pytest.mark.parametrize(("fmt", "emit", "name"), ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_emitted_records_normalize_and_emit_to_the_same_records(tmp_path, fmt, emit, name):
    run = normalize_fixture(tmp_path, fmt, name)
    stills = [s for s in run.samples if all(m["kind"] == "image" for m in s["media"]) and (fmt == "llava" or s["media"])]
    assert len(stills) >= 3
    pairs = round_trip(tmp_path, fmt, emit, stills)
    for first, again in pairs:
        assert again == first
    if fmt == "llava":  # LLaVA keeps placeholders in place: the samples are the same too
        again = normalize_files([tmp_path / "emitted_llava.json"], context(tmp_path, fmt))
        assert [(s["conversations"], [m["uri"] for m in s["media"]]) for s in again.samples] == [
            (s["conversations"], [m["uri"] for m in s["media"]]) for s in stills]


def test_llava_video_frames_normalize_and_emit_to_the_same_record(tmp_path):
    run = normalize_fixture(tmp_path, "llava", "llava_mix.json")
    videos = [s for s in run.samples if any(m["kind"] != "image" for m in s["media"])]
    assert videos
    for first, again in round_trip(tmp_path, "llava", to_llava, videos):
        assert again == first


def stored_image(uri: str) -> tuple[str, tuple[int, int]]:
    with Image.open(uri) as image:
        return image.format, image.size


DC_FILES = ("DC_instructions.json", "DC_train.json", "DC.json")
DC_ANSWER = "The main focus of the video is a police officer riding a horse down the street."


def assert_dc_outcomes(run: Run) -> None:
    name = "DC_instructions.json"
    query = run.sample(name, 0)
    assert query["conversations"] == conv(
        ("user", "<media>\n<media>\nWho is the main focus of the video?"), ("assistant", DC_ANSWER)
    )
    assert [stored_image(m["uri"]) for m in query["media"]] == [("JPEG", (2, 2)), ("JPEG", (3, 1))]
    assert query["media_type"] == "images"
    assert query["sample_id"] == sample_id("mimicit-fixture", f"DC/{name}", "DC_INS_00001")
    # DC_train.json overrides rel_ins_ids ["DC_INS_00002", "DC_INS_00003"]
    (example,) = query["in_context"]
    assert example["example_id"] == "DC_INS_00003"
    assert example["conversations"] == conv(("user", "<media>\n警察骑的是什么动物？"), ("assistant", "一匹马。"))
    assert [stored_image(m["uri"]) for m in example["media"]] == [("PNG", (1, 1))]
    # not in the train file: rel_ins_ids are the examples
    chinese = run.sample(name, 2)
    assert [e["example_id"] for e in chinese["in_context"]] == ["DC_INS_00001"]
    assert chinese["in_context"][0]["media"] == query["media"]
    assert run.sample(name, 1)["in_context"] == []
    text_only = run.sample(name, 5)
    assert (text_only["media"], text_only["media_type"]) == ([], "text")
    assert text_only["conversations"] == conv(("user", "Say hello."), ("assistant", "Hello!"))
    assert run.reasons(name) == {
        3: "image id 'DC_IMG_v_N1c3C_Npr-E_0099' not found in DC.json",
        4: "image 'DC_IMG_bad': invalid base64",
        6: "in-context example 'DC_INS_09999' not found (or unreadable)",
        7: "instruction must be a string, got a number",
        8: "turn 1: empty assistant turn",
        9: "unexpected media tag <video> in instruction",
    }


def test_mimicit_instructions_examples_and_images(tmp_path):
    ctx = context(tmp_path, "mimicit")
    files = [FIXTURES / "mimicit" / "DC" / f for f in DC_FILES] + sorted((FIXTURES / "mimicit" / "LA").iterdir())
    run = normalize_files(files, ctx)
    assert_dc_outcomes(run)
    shared = run.sample("LADD_instructions.json", 0)  # LADD finds its images in LA.json
    assert [stored_image(m["uri"]) for m in shared["media"]] == [("JPEG", (3, 1)), ("PNG", (1, 1))]
    # only referenced images are stored: 3 distinct ones
    assert len(list((tmp_path / "inline").iterdir())) == 3


def test_mimicit_parquet_images_give_the_same_samples(tmp_path):
    task = tmp_path / "DC"
    task.mkdir()
    for name in DC_FILES[:2]:
        shutil.copy(FIXTURES / "mimicit" / "DC" / name, task / name)
    images = json.loads((FIXTURES / "mimicit" / "DC" / "DC.json").read_text())
    pd.DataFrame({"base64": list(images.values())}, index=list(images)).to_parquet(task / "DC.parquet")
    run = normalize_files(sorted(task.iterdir()), context(tmp_path, "mimicit"))
    from_json = normalize_files([FIXTURES / "mimicit" / "DC" / f for f in DC_FILES], context(tmp_path, "mimicit"))
    assert [(s["conversations"], s["media"], s["in_context"]) for s in run.samples] == [
        (s["conversations"], s["media"], s["in_context"]) for s in from_json.samples
    ]
    assert len(run.samples) == 4 and len(run.rejects) == 6


def test_mimicit_plan_groups_the_files_of_a_task():
    plan = get_adapter("mimicit").plan(
        [
            "s3://b/LA/LA.json",
            "s3://b/LA/LADD_instructions.json",
            "s3://b/LA/LACONV_train.json",
            "s3://b/LA/LACONV_instructions.json",
            "s3://b/DC/DC_train.json",
            "s3://b/DC/DC.parquet",
            "s3://b/DC/DC_instructions.json",
            "s3://b/SD/SD_train.json",
        ]
    )
    assert plan == [
        ["s3://b/DC/DC_instructions.json", "s3://b/DC/DC_train.json", "s3://b/DC/DC.parquet"],
        ["s3://b/LA/LACONV_instructions.json", "s3://b/LA/LACONV_train.json", "s3://b/LA/LA.json"],
        ["s3://b/LA/LADD_instructions.json", "s3://b/LA/LA.json"],
        ["s3://b/SD/SD_train.json"],
    ]


def test_mimicit_broken_member_missing_image_file_and_orphan_train_file(tmp_path):
    task = tmp_path / "SN"
    task.mkdir()
    (task / "SN_instructions.json").write_text(
        '{"meta": {}, "data": {"SN_INS_1": {"instruction": "Q", "answer": "A", "image_ids": ["SN_IMG_1"]},'
        ' "SN_INS_2": {"instruction": "Q" "answer": "A"},'
        ' "SN_INS_3": {"instruction": "Hi", "answer": "Hello"}}}'
    )
    (tmp_path / "TV_train.json").write_text("{}")
    run = normalize_files([task / "SN_instructions.json", tmp_path / "TV_train.json"], context(tmp_path, "mimicit"))
    assert run.reasons("SN_instructions.json") == {
        0: "image 'SN_IMG_1': the task has no image file",
        1: "invalid JSON: Expecting ',' delimiter (offset 20)",
    }
    assert run.sample("SN_instructions.json", 2)["conversations"] == conv(("user", "Hi"), ("assistant", "Hello"))
    assert run.reasons("TV_train.json") == {0: "TV_train.json: no matching *_instructions.json file"}


def test_m3it_inline_images(tmp_path):
    run = normalize_fixture(tmp_path, "m3it", "m3it_vqa.jsonl")
    name = "m3it_vqa.jsonl"
    first = run.sample(name, 0)
    assert first["conversations"] == conv(
        ("system", "Answer the question about the image."),
        ("user", "<media>\nWhat color is the square?"),
        ("assistant", "Red."),
    )
    assert [stored_image(m["uri"]) for m in first["media"]] == [("JPEG", (2, 2))]
    second = run.sample(name, 1)  # URL-safe and standard base64 in one record
    assert second["conversations"][0] == {"role": "user", "content": "<media>\n<media>\nWhich image is blue?"}
    assert [stored_image(m["uri"]) for m in second["media"]] == [("JPEG", (3, 1)), ("PNG", (1, 1))]
    text = run.sample(name, 2)
    assert (text["media_type"], text["conversations"][1]) == (
        "text",
        {"role": "user", "content": "Bonjour tout le monde"},
    )
    assert run.reasons(name) == {
        3: "image_base64_str[0]: invalid base64",
        4: "image_base64_str[0]: not a JPEG, PNG, GIF, WebP or BMP image",
        5: "outputs must be a string, got null",
        7: "turn 2: empty assistant turn",
        8: "unexpected media tag <video> in inputs",
    }


# --- the normalize loop ----------------------------------------------------------------------

ALL_FIXTURES = [
    ("videochat2", ("ego_qa_train.json", "truncated.json", "m3it_image_train.json"), 15 + 2 + 3),
    ("videoinstruct100k", ("VideoInstruct_Dataset.json", "video_chatgpt_training.json"), 9 + 4),
    ("conversations_jsonl", ("webvid_core100k.jsonl", "longalpaca_chat_fake_vid.json"), 12 + 1),
    ("llava", ("llava_mix.json", "llava_lines.json"), 19 + 2),
    ("minicpmv", ("minicpmv_t2vid.json",), 12),
    (
        "mimicit",
        ("DC/DC_instructions.json", "DC/DC_train.json", "DC/DC.json", "LA/LADD_instructions.json", "LA/LA.json"),
        10 + 1,
    ),
    ("m3it", ("m3it_vqa.jsonl",), 9),
]


@pytest.mark.parametrize(("fmt", "names", "n_records"), ALL_FIXTURES, ids=[f[0] for f in ALL_FIXTURES])
def test_every_record_is_one_row_and_sample_ids_are_stable(tmp_path, fmt, names, n_records):
    first = normalize_fixture(tmp_path, fmt, *names)
    again = normalize_fixture(tmp_path, fmt, *names)
    assert len(first.samples) + len(first.rejects) == n_records
    assert first.samples and all(r["stage"] == "normalize" and r["reason"] for r in first.rejects)
    ids = [s["sample_id"] for s in first.samples]
    assert len(set(ids)) == len(ids)
    assert ids == [s["sample_id"] for s in again.samples]
    assert first.rejects == again.rejects


def test_ten_megabyte_answer_and_reject_raw_truncated_to_64_kib(tmp_path):
    answer = "Le café est très chaud. " * 420_000  # ~10 MB of UTF-8
    path = tmp_path / "big.json"
    path.write_text(
        json.dumps(
            [
                {"video": "a.mp4", "QA": [{"i": "", "q": "Q", "a": answer}]},
                {"video": "/abs/b.mp4", "QA": [{"i": "", "q": "Q", "a": "é" * 5_000_000}]},
                {"video": "c.mp4", "QA": [{"i": "", "q": "Q", "a": "short"}]},
            ],
            ensure_ascii=False,
        ),
        encoding="utf-8",
    )
    run = normalize_files([path], context(tmp_path, "videochat2"))
    assert run.sample("big.json", 0)["conversations"][1]["content"] == answer
    assert run.sample("big.json", 2)["conversations"][1]["content"] == "short"
    (reject,) = run.rejects
    assert reject["reason"] == "absolute media path not allowed: '/abs/b.mp4'"
    raw = reject["raw"].encode("utf-8")
    assert 64 * 1024 - 1 <= len(raw) <= 64 * 1024
    assert reject["raw"].startswith('{"video": "/abs/b.mp4"')


def test_plan_run_keeps_unchanged_units_and_replaces_the_others():
    qa = SourceSpec("qa", "videochat2", "s3://b/qa", "s3://media")
    mimic = SourceSpec("mimic", "mimicit", "s3://b/mimic", "s3://media")
    listings = {
        "qa": [ObjectInfo("s3://b/qa/a.json", 10, "e1", 0.0), ObjectInfo("s3://b/qa/b.json", 20, "e2", 0.0)],
        "mimic": [ObjectInfo("s3://b/mimic/DC/DC_instructions.json", 30, "e3", 0.0), ObjectInfo("s3://b/mimic/DC/DC.json", 40, "e4", 0.0)],
    }
    first = plan_run([qa, mimic], listings, None)
    assert first.first and first.kept == 0 and len(first.files) == 4
    assert [(u.source, u.files, u.size) for u in first.units] == [
        ("qa", ("s3://b/qa/a.json",), 10),
        ("qa", ("s3://b/qa/b.json",), 20),
        ("mimic", ("s3://b/mimic/DC/DC_instructions.json", "s3://b/mimic/DC/DC.json"), 70),
    ]
    again = plan_run([qa, mimic], listings, first.files)
    assert (again.units, again.kept, again.replaced, again.replaced_sources, again.first) == ([], 3, {}, [], False)

    changed = {
        "qa": [listings["qa"][0], ObjectInfo("s3://b/qa/b.json", 21, "e5", 0.0), ObjectInfo("s3://b/qa/c.json", 5, "e6", 0.0)],
        "mimic": [listings["mimic"][0], ObjectInfo("s3://b/mimic/DC/DC.json", 40, "e7", 0.0)],  # new images
    }
    plan = plan_run([qa, mimic], changed, first.files)
    assert [u.files[0] for u in plan.units] == ["s3://b/qa/b.json", "s3://b/qa/c.json", "s3://b/mimic/DC/DC_instructions.json"]
    assert plan.kept == 1
    assert plan.replaced == {"qa": ["s3://b/qa/b.json", "s3://b/qa/c.json"]}
    assert plan.replaced_sources == ["mimic"]  # none of its units is kept: all its rows go

    moved = SourceSpec("qa", "videochat2", "s3://b/qa", "s3://elsewhere")
    plan = plan_run([moved], {"qa": listings["qa"]}, first.files)  # new settings; mimic removed
    assert [u.files[0] for u in plan.units] == ["s3://b/qa/a.json", "s3://b/qa/b.json"]
    assert (plan.kept, plan.replaced, plan.replaced_sources) == (0, {}, ["mimic", "qa"])
    removed = plan_run([qa], {"qa": listings["qa"][:1]}, first.files)
    assert (removed.units, removed.kept, removed.replaced) == ([], 1, {"qa": ["s3://b/qa/b.json"]})


# The nasty cases of every format: (file, record index) in its fixtures. MIMIC-IT and M3IT carry
# their images inline (base64, by id), so they have no media path to make absolute or escape.
NASTY = {
    "videochat2": {"unicode": ("ego_qa_train.json", 2), "empty turn": ("ego_qa_train.json", 8),
                   "several <video>": ("ego_qa_train.json", 14), "absolute path": ("ego_qa_train.json", 4),
                   "../ in path": ("ego_qa_train.json", 5)},
    "videoinstruct100k": {"unicode": ("VideoInstruct_Dataset.json", 6), "empty turn": ("VideoInstruct_Dataset.json", 7),
                          "several <video>": ("video_chatgpt_training.json", 2),
                          "absolute path": ("VideoInstruct_Dataset.json", 8), "../ in path": ("VideoInstruct_Dataset.json", 3)},
    "conversations_jsonl": {"unicode": ("webvid_core100k.jsonl", 8), "empty turn": ("webvid_core100k.jsonl", 9),
                            "several <video>": ("webvid_core100k.jsonl", 3), "absolute path": ("webvid_core100k.jsonl", 10),
                            "../ in path": ("webvid_core100k.jsonl", 11)},
    "llava": {"unicode": ("llava_mix.json", 15), "empty turn": ("llava_mix.json", 16),
              "several <video>": ("llava_mix.json", 17), "absolute path": ("llava_mix.json", 9),
              "../ in path": ("llava_mix.json", 18)},
    "minicpmv": {"unicode": ("minicpmv_t2vid.json", 2), "empty turn": ("minicpmv_t2vid.json", 8),
                 "several <video>": ("minicpmv_t2vid.json", 9), "absolute path": ("minicpmv_t2vid.json", 10),
                 "../ in path": ("minicpmv_t2vid.json", 11)},
    "mimicit": {"unicode": ("DC_instructions.json", 2), "empty turn": ("DC_instructions.json", 8),
                "several <video>": ("DC_instructions.json", 9)},
    "m3it": {"unicode": ("m3it_vqa.jsonl", 6), "empty turn": ("m3it_vqa.jsonl", 7), "several <video>": ("m3it_vqa.jsonl", 8)},
}


@pytest.mark.parametrize(("fmt", "names", "n_records"), ALL_FIXTURES, ids=[f[0] for f in ALL_FIXTURES])
def test_every_format_has_the_nasty_cases(tmp_path, fmt, names, n_records):
    run = normalize_fixture(tmp_path, fmt, *names)
    cases = NASTY[fmt]
    file_name, index = cases["unicode"]
    sample = run.sample(file_name, index)
    assert any(ord(ch) > 127 for t in sample["conversations"] for ch in t["content"])
    file_name, index = cases["empty turn"]
    assert run.reasons(file_name)[index] in ("turn 1: empty assistant turn", "turn 2: empty assistant turn")
    file_name, index = cases["several <video>"]
    assert run.reasons(file_name)[index].startswith(("unexpected media tag <video>", "unbalanced media tags: 2 tags"))
    if "absolute path" in cases:
        file_name, index = cases["absolute path"]
        assert run.reasons(file_name)[index].startswith("absolute media path not allowed: '/")
        file_name, index = cases["../ in path"]
        assert run.reasons(file_name)[index].startswith("media path escapes media_root: ")


TEN_MB_ANSWER = "Réponse très détaillée, 詳細な回答. " * 300_000


def ten_mb_answer_file(fmt: str, folder: Path) -> Path:
    """A file of ``fmt`` whose one record answers with ``TEN_MB_ANSWER``."""
    answer = TEN_MB_ANSWER
    records = {
        "videochat2": [{"video": "a.mp4", "QA": [{"i": "", "q": "Q", "a": answer}]}],
        "videoinstruct100k": [{"video_id": "v_a", "q": "Q", "a": answer}],
        "conversations_jsonl": [{"id": "1", "video": "a.mp4", "conversations": [{"value": "Q"}, {"value": answer}]}],
        "llava": [{"id": "1", "image": "a.jpg",
                   "conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": answer}]}],
        "minicpmv": [{"id": "1", "image": "a.jpg",
                      "conversations": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": answer}]}],
        "mimicit": {"meta": {}, "data": {"BIG_INS_1": {"instruction": "Q", "answer": answer}}},
        "m3it": [{"instruction": "", "inputs": "Q", "outputs": answer, "image_base64_str": []}],
    }[fmt]
    path = folder / ("BIG_instructions.json" if fmt == "mimicit" else f"big_{fmt}.json")
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("fmt", sorted(NASTY))
def test_every_format_keeps_a_ten_megabyte_answer(tmp_path, fmt):
    path = ten_mb_answer_file(fmt, tmp_path)
    assert path.stat().st_size > 10_000_000
    run = normalize_files([path], context(tmp_path, fmt))
    assert run.sample(path.name, 0)["conversations"][-1] == {"role": "assistant", "content": TEN_MB_ANSWER}


def test_unreadable_file_is_a_reject(tmp_path):
    adapter = get_adapter("llava")
    missing = str(tmp_path / "missing.json")
    rows = list(normalize_unit(adapter, [missing], context(tmp_path, "llava")))
    assert len(rows) == 1
    kind, row = rows[0]
    assert kind == "reject"
    assert row["reason"].startswith("unreadable: FileNotFoundError:")
    assert (row["source_file"], row["record_index"], row["raw"]) == (missing, None, "")


def test_unexpected_adapter_error_is_an_internal_reject(tmp_path):
    ctx = context(tmp_path, "m3it")

    def put_inline_into_missing_folder(data: bytes, ext: str) -> str:
        target = tmp_path / "no-such-folder" / f"image.{ext}"
        target.write_bytes(data)
        return str(target)

    broken = NormalizeContext(spec=ctx.spec, open_binary=ctx.open_binary, put_inline=put_inline_into_missing_folder)
    run = normalize_files([FIXTURES / "m3it" / "m3it_vqa.jsonl"], broken)
    reasons = run.reasons("m3it_vqa.jsonl")
    assert reasons[0].startswith("internal: FileNotFoundError:")
    assert reasons[1].startswith("internal: FileNotFoundError:")
    assert run.sample("m3it_vqa.jsonl", 2)["media_type"] == "text"


def test_base64_alphabets_decode_to_the_same_image():
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (255, 255, 0)).save(buffer, "JPEG")
    data = buffer.getvalue()
    for encoded in (
        base64.b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
        "data:image/jpeg;base64," + base64.b64encode(data).decode(),
    ):
        assert decode_base64_image(encoded, "image") == (data, "jpg")
