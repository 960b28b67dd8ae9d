"""T2Vid text rendering (``udfs.text_render``): pages of long text, laid out and drawn
deterministically. The ``t2vid_text`` adapter is tested in tests/udfs/adapters/test_t2vid_text.py,
text videos through the pipeline in tests/jobs/test_text_videos.py."""
from __future__ import annotations

import hashlib
import io

import pytest
from PIL import Image, ImageOps

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
    [("长文本指令数据很少", "CJK"), ("これは日本語です", "HIRAGANA"), ("안녕하세요", "HANGUL"),
     ("مرحبا بالعالم", "ARABIC")],
)
def test_scripts_the_font_cannot_draw_are_refused_by_name(text, script):
    with pytest.raises(TextRenderError, match=script):
        check_glyphs("Mixed text: " + text)
    check_glyphs("Accents, Greek and Cyrillic are drawn: café, λόγος, слово — “quoted”")
