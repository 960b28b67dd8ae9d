"""What every source adapter does alike, on the fixture files of every format
(tests/fixtures/formats/): one row per record, the nasty cases, 10 MB answers, records emitted
from samples that normalize back to the same records, base64 images."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from tests.support.adapters import context, normalize_files, normalize_fixture, round_trip
from udfs.adapters import known_formats
from udfs.adapters.common import decode_base64_image
from udfs.shards import to_llava, to_minicpmv


def test_known_formats():
    assert known_formats() == [
        "conversations_jsonl",
        "llava",
        "m3it",
        "messages",
        "mimicit",
        "minicpmv",
        "t2vid_text",
        "videochat2",
        "videoinstruct100k",
    ]


ROUND_TRIPS = [("llava", to_llava, "llava_mix.json"), ("minicpmv", to_minicpmv, "minicpmv_t2vid.json")]


@pytest.mark.parametrize(("fmt", "emit", "name"), ROUND_TRIPS, ids=[r[0] for r in ROUND_TRIPS])
def test_emitted_records_normalize_and_emit_to_the_same_records(tmp_path, fmt, emit, name):
    run = normalize_fixture(tmp_path, fmt, name)
    stills = [s for s in run.samples
              if all(m["kind"] == "image" for m in s["media"]) and (fmt == "llava" or s["media"])]
    assert len(stills) >= 3
    pairs = round_trip(tmp_path, fmt, emit, stills)
    for first, again in pairs:
        assert again == first
    if fmt == "llava":  # LLaVA keeps placeholders in place: the samples are the same too
        again = normalize_files([tmp_path / "emitted_llava.json"], context(tmp_path, fmt))
        assert [(s["conversations"], [m["uri"] for m in s["media"]]) for s in again.samples] == [
            (s["conversations"], [m["uri"] for m in s["media"]]) for s in stills]


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


# The nasty cases of every format: (file, record index) in its fixtures. MIMIC-IT and M3IT carry
# their images inline (base64, by id), so they have no media path to make absolute or escape.
NASTY = {
    "videochat2": {"unicode": ("ego_qa_train.json", 2), "empty turn": ("ego_qa_train.json", 8),
                   "several <video>": ("ego_qa_train.json", 14), "absolute path": ("ego_qa_train.json", 4),
                   "../ in path": ("ego_qa_train.json", 5)},
    "videoinstruct100k": {"unicode": ("VideoInstruct_Dataset.json", 6), "empty turn": ("VideoInstruct_Dataset.json", 7),
                          "several <video>": ("video_chatgpt_training.json", 2),
                          "absolute path": ("VideoInstruct_Dataset.json", 8),
                          "../ in path": ("VideoInstruct_Dataset.json", 3)},
    "conversations_jsonl": {"unicode": ("webvid_core100k.jsonl", 8), "empty turn": ("webvid_core100k.jsonl", 9),
                            "several <video>": ("webvid_core100k.jsonl", 3),
                            "absolute path": ("webvid_core100k.jsonl", 10),
                            "../ in path": ("webvid_core100k.jsonl", 11)},
    "llava": {"unicode": ("llava_mix.json", 15), "empty turn": ("llava_mix.json", 16),
              "several <video>": ("llava_mix.json", 17), "absolute path": ("llava_mix.json", 9),
              "../ in path": ("llava_mix.json", 18)},
    "minicpmv": {"unicode": ("minicpmv_t2vid.json", 2), "empty turn": ("minicpmv_t2vid.json", 8),
                 "several <video>": ("minicpmv_t2vid.json", 9), "absolute path": ("minicpmv_t2vid.json", 10),
                 "../ in path": ("minicpmv_t2vid.json", 11)},
    "mimicit": {"unicode": ("DC_instructions.json", 2), "empty turn": ("DC_instructions.json", 8),
                "several <video>": ("DC_instructions.json", 9)},
    "m3it": {"unicode": ("m3it_vqa.jsonl", 6), "empty turn": ("m3it_vqa.jsonl", 7),
             "several <video>": ("m3it_vqa.jsonl", 8)},
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
        assert run.reasons(file_name)[index].startswith("absolute media path outside media_root: '/")
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
