"""The ``t2vid_text`` adapter: long text contexts rendered into frame folders (T2Vid)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from framelake.config import ConfigError, parse_config
from tests.support.paths import FORMATS
from udfs.adapters import NormalizeContext, SourceSpec, get_adapter
from udfs.normalize import normalize_unit
from udfs.sample import MEDIA_TOKEN

FIXTURE = FORMATS / "t2vid_text" / "longalpaca_text.json"
SCRIPTS = FORMATS / "t2vid_text" / "scripts_text.json"


def adapter_context(tmp_path: Path, options: dict | None = None, annotations: Path = FIXTURE) -> NormalizeContext:
    media = tmp_path / "media"

    def put_object(relative_path: str, data: bytes) -> str:
        path = media / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    spec = SourceSpec(name="longalpaca", format="t2vid_text", annotations=str(annotations), media_root=str(tmp_path),
                      options=options or {})
    return NormalizeContext(spec=spec, open_binary=lambda uri, offset=0: open(uri, "rb"), put_inline=None,
                            put_object=put_object)


def test_adapter_renders_the_context_into_a_frame_folder(tmp_path):
    ctx = adapter_context(tmp_path)
    outcomes = list(normalize_unit(get_adapter("t2vid_text"), [str(FIXTURE)], ctx))
    samples = [row for kind, row in outcomes if kind == "sample"]
    rejects = [row for kind, row in outcomes if kind == "reject"]
    assert len(samples) == 5 and not rejects

    records = json.loads(FIXTURE.read_text())
    pages_per_sample = []
    for sample in samples:
        assert sample["media_type"] == "text_video"
        [media] = sample["media"]
        assert media["kind"] == "frames_dir"
        pages = sorted(Path(media["uri"]).iterdir())
        assert [p.name for p in pages] == [f"text_pic_{i:05d}.png" for i in range(len(pages))]
        pages_per_sample.append(len(pages))
        user = next(t for t in sample["conversations"] if t["role"] == "user")
        assert user["content"].count(MEDIA_TOKEN) == 1
    assert pages_per_sample == [2, 1, 3, 1, 1]  # 182, 91, 277 and 98 words, 49 CJK characters
    # A context record keeps its question; a long first turn is replaced by the frames.
    assert samples[0]["conversations"][0]["content"] == f"{MEDIA_TOKEN}\nWhat does the text propose, in one sentence?"
    assert samples[1]["conversations"][0]["content"] == f"{MEDIA_TOKEN}\nHow are the pages drawn?"
    assert samples[2]["conversations"][0]["content"] == MEDIA_TOKEN
    assert samples[3]["conversations"] == [
        {"role": "user", "content": MEDIA_TOKEN}, {"role": "assistant", "content": records[3]["output"]}]


def test_adapter_options_set_the_page_and_bad_options_fail_the_config(tmp_path):
    ctx = adapter_context(tmp_path, {"words_per_frame": 30, "width": 320, "height": 240, "font_size": 14})
    outcomes = list(normalize_unit(get_adapter("t2vid_text"), [str(FIXTURE)], ctx))
    first = next(row for kind, row in outcomes if kind == "sample")
    pages = sorted(Path(first["media"][0]["uri"]).iterdir())
    assert len(pages) == 7  # ceil(182 / 30)
    with Image.open(pages[0]) as image:
        assert image.size == (320, 240)

    # A bad option fails the config load (so `framelake validate`), not every record of the source.
    source = {"name": "longalpaca", "format": "t2vid_text", "annotations": str(FIXTURE),
              "options": {"words_per_frame": 0, "font_sise": 14}}
    with pytest.raises(ConfigError) as raised:
        parse_config({"lake": str(tmp_path / "lake"), "sources": [source],
                      "models": [{"name": "m", "profile": "minicpm-llama3-v2_5"}]})
    assert raised.value.problems == [
        "sources[0].options.words_per_frame: must be a positive integer, got 0",
        "sources[0].options.font_sise: unknown option (known: allow_remote_media, context_key, font_size, height, "
        "max_pages, media_dataset, min_font_size, width, words_per_frame)",
    ]


def normalized(tmp_path: Path, options: dict, annotations: Path = SCRIPTS) -> tuple[dict, dict]:
    """({record id: sample}, {record index: reject reason}) of a fixture file."""
    ctx = adapter_context(tmp_path, options, annotations)
    outcomes = list(normalize_unit(get_adapter("t2vid_text"), [str(annotations)], ctx))
    samples = {row["raw"] and json.loads(row["raw"])["id"]: row for kind, row in outcomes if kind == "sample"}
    rejects = {row["record_index"]: row["reason"] for kind, row in outcomes if kind == "reject"}
    return samples, rejects


def test_adapter_renders_every_script(tmp_path):
    samples, rejects = normalized(tmp_path, {})
    assert not rejects
    pages = {key: len(list(Path(s["media"][0]["uri"]).iterdir())) for key, s in samples.items()}
    # 4 CJK pages of 165 characters (the last short); 127 Arabic words; 640 English words; a
    # table of URLs that overflows one page at font size 12.
    assert pages == {"scripts_zh": 4, "scripts_ja": 4, "scripts_ko": 4, "scripts_ar": 2, "scripts_en": 6,
                     "scripts_mixed": 2}
    assert samples["scripts_ar"]["conversations"][0]["content"] == f"{MEDIA_TOKEN}\nعمّ يتحدث هذا النص؟"


def test_adapter_rejects_only_text_that_cannot_be_laid_out_and_honours_min_font_size(tmp_path):
    # 20 px high: a line of DejaVu Sans or Noto Sans CJK fits at size 12, one of Noto Sans Arabic
    # (26 px) does not: the records with Arabic are refused, with the reason.
    samples, rejects = normalized(tmp_path / "12", {"height": 20, "font_size": 12})
    assert sorted(samples) == ["scripts_en", "scripts_ja", "scripts_ko", "scripts_zh"]
    assert rejects == {3: "long text: a line at font size 12 is 26 px tall, taller than the 448x20 canvas",
                       5: "long text: a line at font size 12 is 26 px tall, taller than the 448x20 canvas"}
    smaller, rejects = normalized(tmp_path / "8", {"height": 20, "font_size": 12, "min_font_size": 8})
    assert not rejects and len(smaller) == 6
    # A page's folder is named by the minimum only when it is not the one used before the option.
    assert smaller["scripts_en"]["media"][0]["uri"] != samples["scripts_en"]["media"][0]["uri"]
    same, _ = normalized(tmp_path / "12b", {"height": 20, "font_size": 12, "min_font_size": 12})
    assert Path(same["scripts_en"]["media"][0]["uri"]).name == Path(samples["scripts_en"]["media"][0]["uri"]).name

    source = {"name": "scripts", "format": "t2vid_text", "annotations": str(SCRIPTS), "options": {"min_font_size": 0}}
    with pytest.raises(ConfigError) as raised:
        parse_config({"lake": str(tmp_path / "lake"), "sources": [source],
                      "models": [{"name": "m", "profile": "minicpm-llama3-v2_5"}]})
    assert raised.value.problems == ["sources[0].options.min_font_size: must be a positive integer, got 0"]
