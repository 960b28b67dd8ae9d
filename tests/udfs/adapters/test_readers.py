"""The streaming readers of annotation files (``udfs.adapters.readers``): JSON arrays, JSON
lines and JSON objects, malformed, truncated or not UTF-8, read whole or in splits."""

from __future__ import annotations

import io
import json

import pytest

from tests.support.paths import FORMATS
from udfs.adapters import RawRecord
from udfs.adapters.readers import (
    Split,
    read_json_array,
    read_json_object,
    read_jsonl,
    read_records,
    read_split,
    scan_splits,
)


def records(data: bytes, reader=read_records, **kwargs) -> list[RawRecord]:
    return list(reader(io.BytesIO(data), **kwargs))


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
    lines = (FORMATS / "llava" / "llava_lines.json").read_bytes()
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
    "\n".join(json.dumps({"i": i, "t": "ü" * i}, ensure_ascii=False) + ("\n \t\n" * (i % 7 == 0))
              for i in range(90)).encode(),
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
