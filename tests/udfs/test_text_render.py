"""T2Vid text rendering (``udfs.text_render``): pages of long text, laid out and drawn
deterministically. The ``t2vid_text`` adapter is tested in tests/udfs/adapters/test_t2vid_text.py,
text videos through the pipeline in tests/jobs/test_text_videos.py."""
from __future__ import annotations

import hashlib
import io
import json
import statistics
import subprocess
import sys

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont, ImageOps

from tests.support.paths import FORMATS
from udfs.text_render import (
    ARABIC,
    CJK,
    CJK_CHARS_PER_FRAME,
    LATIN,
    REPLACEMENT,
    PageStyle,
    TextRenderError,
    _font,
    _word,
    bidi_levels,
    chunks,
    draw_page,
    drawable_text,
    font_of,
    font_path,
    layout_page,
    layout_pages,
    render_text,
    words_of,
)
from udfs.tokenizers import load_counter

# Texts in each script, written for these tests (zh, ja, ko, ar), an English text parallel to
# the CJK ones, and a mixed one with emoji and a table of URLs.
SCRIPTS = {r["lang"]: r["context"] for r in json.loads((FORMATS / "t2vid_text" / "scripts_text.json").read_text())}

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


@pytest.mark.parametrize(("lang", "face"), [("zh", CJK), ("ja", CJK), ("ko", CJK), ("ar", ARABIC)])
def test_cjk_and_arabic_are_drawn_in_their_fonts(lang, face):
    text = SCRIPTS[lang]
    letters = [ch for ch in text if ch.isalpha() and not ch.isascii()]
    assert {font_of(ch) for ch in letters} == {face}
    assert drawable_text(text) == text  # nothing replaced
    pages = render_text("Mixed text: " + text)
    assert all(ink_box(png) for png in pages)
    for ch in "Accents, Greek and Cyrillic are drawn: café, λόγος, слово — “quoted”":
        assert font_of(ch) is LATIN


def test_a_cjk_line_is_the_cjk_font_drawing_it():
    words = ["長い文脈を扱える言語モデル。"]
    layout = layout_page(words)
    [line] = layout.lines
    assert [run.face for run in line.runs] == [CJK]
    reference = Image.new("L", (448, 448), 255)
    font = ImageFont.truetype(str(font_path(CJK)), layout.font_size, layout_engine=ImageFont.Layout.BASIC)
    ImageDraw.Draw(reference).text((line.x, line.y), line.text, fill=0, font=font)
    with Image.open(io.BytesIO(draw_page(layout))) as page:
        assert ImageChops.difference(page, reference).getbbox() is None


def test_cjk_pages_are_cut_by_characters_at_the_token_cost_of_115_words():
    english = [" ".join(page) for page in chunks(words_of(SCRIPTS["en"]))][:-1]
    assert all(len(page.split()) == 115 for page in english)
    for spec in ("llama3", "qwen2"):
        counter = load_counter(spec)
        english_tokens = statistics.mean(counter.count(english, add_special_tokens=False))
        for lang in ("zh", "ja", "ko"):
            pages = ["".join(page) if lang != "ko" else " ".join(page) for page in chunks(words_of(SCRIPTS[lang]))]
            assert len(pages) == 4
            for page in pages[:-1]:  # full: CJK_CHARS_PER_FRAME characters, less "T2Vid" (a word) and glued marks
                cjk = sum(1 for ch in page if not ch.isspace() and not ch.isascii())
                assert CJK_CHARS_PER_FRAME - 4 <= cjk <= CJK_CHARS_PER_FRAME, (lang, cjk)
            tokens = counter.count(pages[:-1], add_special_tokens=False)
            # Within a quarter of an English page for each tokenizer and language
            # (docs/measurements.md has the figures).
            assert 0.75 < statistics.mean(tokens) / english_tokens < 1.25, (spec, lang, tokens, english_tokens)
    assert "".join("".join(page) for page in chunks(words_of(SCRIPTS["zh"]))) == "".join(SCRIPTS["zh"].split())


def test_mixed_text_breaks_between_cjk_characters_only():
    assert _word("我用GPT-4写代码。").units == ("我", "用", "GPT-4", "写", "代", "码。")  # "。" never starts a line
    assert _word("「引用」です").units == ("「引", "用」", "で", "す")
    assert _word("한국어").units == ("한국어",)  # Korean wraps at its spaces
    assert words_of("في عام 2024 زار 15 مليون سائح") == ["في", "عام", "2024", "زار", "15", "مليون", "سائح"]
    narrow = PageStyle(width=140, height=448)
    lines = [line.text for line in layout_page(["Python是一种广泛使用的编程语言，我用GPT-4写代码。"], narrow).lines]
    assert "".join(lines) == "Python是一种广泛使用的编程语言，我用GPT-4写代码。"
    assert len(lines) > 2 and not any(line.startswith(("，", "。")) for line in lines)
    assert any("GPT-4" in line for line in lines) and any("Python" in line for line in lines)


def test_arabic_is_shaped_and_laid_out_right_to_left():
    words = ["مرحبا", "بالعالم"]
    layout = layout_page(words)
    [line] = layout.lines
    assert line.x + line.width == 448 - 20  # right-aligned
    raqm = ImageFont.truetype(str(font_path(ARABIC)), layout.font_size, layout_engine=ImageFont.Layout.RAQM)
    reference = Image.new("L", (448, 448), 255)
    ImageDraw.Draw(reference).text((line.x, line.y), line.text, fill=0, font=raqm, direction="rtl")
    first = Image.new("L", (448, 448), 255)  # the first word alone, at the right end of the line
    first_width = raqm.getlength(words[0], direction="rtl")
    ImageDraw.Draw(first).text((line.x + line.width - first_width, line.y), words[0], fill=0, font=raqm,
                               direction="rtl")
    unshaped = Image.new("L", (448, 448), 255)
    basic = ImageFont.truetype(str(font_path(ARABIC)), layout.font_size, layout_engine=ImageFont.Layout.BASIC)
    ImageDraw.Draw(unshaped).text((line.x, line.y), line.text, fill=0, font=basic)
    with Image.open(io.BytesIO(draw_page(layout))) as page:
        assert ImageChops.difference(page, reference).getbbox() is None
        right = (int(line.x + line.width - first_width) + 1, 0, 448, 448)
        assert ImageChops.difference(page.crop(right), first.crop(right)).getbbox() is None
        assert ImageChops.difference(page, unshaped).getbbox() is not None


def test_numbers_in_arabic_stay_left_to_right():
    assert bidi_levels("عام 2024 م", 1) == [1, 1, 1, 1, 2, 2, 2, 2, 1, 1]
    assert bidi_levels("hello عام 2024 م.", 0) == [0] * 6 + [1] * 4 + [2] * 4 + [1, 1, 0]
    [line] = layout_page(["في", "عام", "2024"]).lines
    runs = {run.text.strip(): run for run in line.runs}
    assert runs["2024"].x < runs["في عام"].x and not runs["2024"].rtl and runs["في عام"].rtl


def test_characters_no_font_has_are_replaced():
    text = "cat 🐈 thumbs 👍🏽 family 👨\u200d👩\u200d👧 flag 🇫🇷 smile 😀"
    # The skin tone is left out, the joiners kept (DejaVu Sans has them: they draw nothing);
    # DejaVu Sans has the emoticons block.
    family, flag = "\u200d".join(REPLACEMENT * 3), REPLACEMENT * 2
    assert drawable_text(text) == f"cat {REPLACEMENT} thumbs {REPLACEMENT} family {family} flag {flag} smile 😀"
    assert font_of("🐈") is None and font_of(REPLACEMENT) is LATIN and font_of("😀") is LATIN
    assert render_text(text) == render_text(drawable_text(text))
    assert words_of("a \ufe0f\u200d b") == ["a", "b"]  # a word that draws nothing is no word


def test_a_table_of_urls_is_broken_across_lines_and_pages():
    table = " ".join(f"| {i} | https://example.org/datasets/part-{i:04d}/shard.jsonl?sig={'9f3a' * 12} | "
                     f"sha256:{'0123456789abcdef' * 4} |" for i in range(30))
    words = words_of(table)
    assert len(chunks(words)) == 2
    per_chunk = [layout_pages(page) for page in chunks(words)]
    assert [len(pages) > 1 and pages[0].font_size == 12 for pages in per_chunk] == [True, True]  # overflowed
    layouts = [layout for pages in per_chunk for layout in pages]
    drawn = [line.text for layout in layouts for line in layout.lines]
    assert "".join(drawn).replace(" ", "") == table.replace(" ", "")  # nothing lost or reordered
    for layout in layouts:
        assert all(line.width <= 448 - 40 and line.y + line.height <= 448 for line in layout.lines)
    assert len(render_text(table)) == len(layouts)


def test_a_page_shrinks_then_continues_on_the_next_page():
    words = ["internationalization"] * 115
    [shrunk] = layout_pages(words[:40])
    assert 12 <= shrunk.font_size < 20
    pages = layout_pages(words)
    assert len(pages) == 2 and pages[0].font_size == 12
    assert [w for page in pages for line in page.lines for w in line.text.split()] == words


def test_min_font_size_is_honoured():
    words = ["internationalization"] * 115
    [small] = layout_pages(words, PageStyle(min_font_size=8))
    assert 8 <= small.font_size < 12
    assert all(page.font_size >= 12 for page in layout_pages(words, PageStyle(min_font_size=12)))
    # Refused only when one character cannot fit: wider than a line, or taller than the page.
    with pytest.raises(TextRenderError, match="'長' is wider than a line .10 px. even at font size 12"):
        render_text("長い文脈", style=PageStyle(width=50, font_size=14, min_font_size=12))
    with pytest.raises(TextRenderError, match="a line at font size 12 is 15 px tall, taller than the 448x10 canvas"):
        render_text("tall", style=PageStyle(height=10, font_size=12, min_font_size=12))


def test_max_pages_refuses_before_drawing():
    with pytest.raises(TextRenderError, match="at least 3 pages, over max_pages 2"):
        render_text(TEXT, max_pages=2)
    assert len(render_text(TEXT, max_pages=4)) == 4


RENDER_HASHES = """
import hashlib, json, sys
from udfs.text_render import render_text
texts = json.loads(sys.stdin.read())
print(json.dumps({k: [hashlib.sha256(p).hexdigest() for p in render_text(t)] for k, t in texts.items()}))
"""


def test_every_script_renders_byte_identically_in_another_process():
    here = {lang: [hashlib.sha256(p).hexdigest() for p in render_text(text)] for lang, text in SCRIPTS.items()}
    again = subprocess.run([sys.executable, "-c", RENDER_HASHES], input=json.dumps(SCRIPTS), capture_output=True,
                           text=True, check=True)
    assert json.loads(again.stdout) == here
