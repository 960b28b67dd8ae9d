"""T2Vid text rendering (``udfs.text_render``), the ``t2vid_text`` adapter, and text videos
through the real pipeline."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from udfs.adapters import NormalizeContext, SourceSpec, get_adapter
from udfs.normalize import normalize_unit
from udfs.sample import MEDIA_TOKEN
from udfs.text_render import (
    PageStyle,
    TextRenderError,
    _font,
    check_glyphs,
    chunks,
    layout_page,
    render_text,
    words_of,
)

FIXTURE = Path(__file__).parent / "fixtures" / "formats" / "t2vid_text" / "longalpaca_text.json"
# 420 words of plain English, every 7th numbered so that pages differ.
TEXT = " ".join(
    f"{w}{i}" if i % 7 == 0 else w
    for i, w in enumerate(("the pipeline renders every chunk of long text as one page of a video " * 30).split())
)


def ink_box(png: bytes) -> tuple[int, int, int, int] | None:
    """Bounding box of the non-white pixels of a page."""
    with Image.open(io.BytesIO(png)) as image:
        return ImageOps.invert(image.convert("L")).getbbox()


def test_known_text_gives_one_448_page_per_115_words():
    words = words_of(TEXT)
    assert len(words) == 14 * 30
    pages = render_text(TEXT)
    assert len(pages) == len(chunks(words)) == 4  # 115 + 115 + 115 + 75
    for png in pages:
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG"
            assert image.size == (448, 448)


def test_every_line_and_word_lies_inside_the_canvas():
    style = PageStyle()
    for words in chunks(words_of(TEXT)):
        layout = layout_page(words, style)
        font = _font(layout.font_size)
        assert [w for line in layout.lines for w in line.text.split()] == words  # nothing lost or reordered
        for line in layout.lines:
            assert line.x == 20 and line.width <= style.width - 40
            assert 0 <= line.y and line.y + line.height <= style.height
            for word in line.text.split():  # each word's box, from its offset in the drawn line
                left = line.x + font.getlength(line.text[: line.text.index(word)])
                assert left + font.getlength(word) <= style.width - 20
        # Centred: the space above the block equals the space below, to a pixel.
        above = layout.lines[0].y
        below = style.height - (layout.lines[-1].y + layout.lines[-1].height)
        assert abs(above - below) <= 1


def test_drawn_ink_stays_within_the_margins():
    for png in render_text(TEXT):
        left, top, right, bottom = ink_box(png)
        assert left >= 18 and right <= 448 - 18 and top > 0 and bottom < 448


def test_a_word_wider_than_a_line_is_broken_across_lines():
    url = "https://example.org/" + "a-very-long-path-segment/" * 12
    layout = layout_page(["see", url, "here"])
    assert "".join(line.text.replace(" ", "") for line in layout.lines) == "see" + url + "here"
    assert len(layout.lines) >= 3
    assert all(line.width <= 448 - 40 for line in layout.lines)


def test_a_chunk_taller_than_the_canvas_shrinks_then_is_refused():
    long_words = ["internationalization"] * 115  # one word per line at size 20: far too tall
    tall = layout_page(long_words[:40])
    assert tall.font_size < 20
    assert tall.lines[-1].y + tall.lines[-1].height <= 448
    with pytest.raises(TextRenderError, match="does not fit a 448x448 canvas even at font size 12"):
        layout_page(long_words)


def test_rendering_is_deterministic_by_hash():
    first = [hashlib.sha256(p).hexdigest() for p in render_text(TEXT)]
    _font.cache_clear()  # a fresh font object, as in another worker process
    second = [hashlib.sha256(p).hexdigest() for p in render_text(TEXT)]
    assert first == second
    assert len(set(first)) == len(first)


@pytest.mark.parametrize(
    "text, script",
    [("长文本指令数据很少", "CJK"), ("これは日本語です", "HIRAGANA"), ("안녕하세요", "HANGUL"), ("مرحبا بالعالم", "ARABIC")],
)
def test_scripts_the_font_cannot_draw_are_refused_by_name(text, script):
    with pytest.raises(TextRenderError, match=script):
        check_glyphs("Mixed text: " + text)
    check_glyphs("Accents, Greek and Cyrillic are drawn: café, λόγος, слово — “quoted”")


def adapter_context(tmp_path: Path, options: dict | None = None) -> NormalizeContext:
    media = tmp_path / "media"

    def put_object(relative_path: str, data: bytes) -> str:
        path = media / relative_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    spec = SourceSpec(name="longalpaca", format="t2vid_text", annotations=str(FIXTURE), media_root=str(tmp_path),
                      options=options or {})
    return NormalizeContext(spec=spec, open_binary=lambda uri, offset=0: open(uri, "rb"), put_inline=None,
                            put_object=put_object)


def test_adapter_renders_the_context_into_a_frame_folder(tmp_path):
    ctx = adapter_context(tmp_path)
    outcomes = list(normalize_unit(get_adapter("t2vid_text"), [str(FIXTURE)], ctx))
    samples = [row for kind, row in outcomes if kind == "sample"]
    rejects = [row for kind, row in outcomes if kind == "reject"]
    assert len(samples) == 4 and len(rejects) == 1
    assert "CJK" in rejects[0]["reason"]

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
    assert pages_per_sample == [2, 1, 3, 1]  # 182, 91, 277 and 98 words
    # A context record keeps its question; a long first turn is replaced by the frames.
    assert samples[0]["conversations"][0]["content"] == f"{MEDIA_TOKEN}\nWhat does the text propose, in one sentence?"
    assert samples[1]["conversations"][0]["content"] == f"{MEDIA_TOKEN}\nHow are the pages drawn?"
    assert samples[2]["conversations"][0]["content"] == MEDIA_TOKEN
    assert samples[3]["conversations"] == [
        {"role": "user", "content": MEDIA_TOKEN}, {"role": "assistant", "content": records[3]["output"]}]


def test_adapter_options_set_the_page_and_bad_options_reject(tmp_path):
    ctx = adapter_context(tmp_path, {"words_per_frame": 30, "width": 320, "height": 240, "font_size": 14})
    outcomes = list(normalize_unit(get_adapter("t2vid_text"), [str(FIXTURE)], ctx))
    first = next(row for kind, row in outcomes if kind == "sample")
    pages = sorted(Path(first["media"][0]["uri"]).iterdir())
    assert len(pages) == 7  # ceil(182 / 30)
    with Image.open(pages[0]) as image:
        assert image.size == (320, 240)

    bad = adapter_context(tmp_path, {"words_per_frame": 0})
    reasons = {row["reason"] for kind, row in normalize_unit(get_adapter("t2vid_text"), [str(FIXTURE)], bad)}
    assert "option words_per_frame must be a positive integer, got 0" in reasons


def test_text_videos_flow_through_the_pipeline(spark, tmp_path):
    from framelake.runtime import Context
    from jobs.pipeline import run_stages
    from tests.conftest import demo_config

    source = {"name": "longalpaca", "format": "t2vid_text", "annotations": str(FIXTURE)}
    ctx = Context.create(demo_config(str(tmp_path / "lake"), sources=[source]), spark)
    results = {r.stage: r for r in run_stages(ctx, ["normalize", "frames", "tokens"], echo=lambda line: None)}
    assert results["normalize"].counts["samples"] == 4 and results["normalize"].counts["rejects"] == 1

    videos = [row.asDict() for row in ctx.lake.read("videos").collect()]
    assert len(videos) == 4 and {v["status"] for v in videos} == {"ok"}
    frames = [row.asDict() for row in ctx.lake.read("frames").collect()]
    assert len(frames) == 2 + 1 + 3 + 1
    assert {(f["width"], f["height"]) for f in frames} == {(448, 448)}
    lengths = [row.asDict() for row in ctx.lake.read("token_lengths").collect()]
    assert lengths and all(row["n_frames"] >= 1 for row in lengths)
