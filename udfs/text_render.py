"""T2Vid's text rendering: long text as a sequence of page images (a "text video").

T2Vid (``utils/text-to-images/t2vid.py``) word-tokenizes the text, cuts it into chunks of 115
tokens and draws each chunk black on white on a 448×448 canvas at font size 20, greedily
wrapped to width − 40 at x = 20, the text block vertically centred, one PNG per chunk.

Differences, on purpose:
- Words are whitespace-separated runs (``str.split``). T2Vid's word tokenizer counts
  punctuation as tokens of its own, so its 115-token chunks hold slightly fewer words.
- The font is DejaVu Sans as shipped inside matplotlib, never a font looked up on the system,
  drawn with Pillow's basic layout (not raqm, which is present on some machines only), so the
  same text gives byte-identical PNGs wherever the same Pillow and matplotlib are installed.
- Text the font cannot draw is refused (``TextRenderError`` naming the scripts) instead of
  being drawn as boxes: CJK, and every character missing from the font's cmap. Right-to-left
  scripts (Arabic, Hebrew) are refused too: the basic layout neither shapes nor reorders them.
- Every word stays inside the canvas: a word wider than a line is broken across lines, and a
  chunk taller than the canvas is drawn at a smaller font size, down to ``min_font_size``,
  below which it is refused.
- Pages are greyscale PNGs encoded in memory (fast zlib level): drawing and encoding are one
  step, with the font objects and word widths reused by the process.
"""
from __future__ import annotations

import functools
import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from PIL import Image, ImageDraw, ImageFont

FONT_PATH = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
FONT_NAME = "DejaVu Sans"
WORDS_PER_FRAME = 115
# zlib level 1: PNGs a little bigger than level 6, encoded several times faster; still lossless.
_PNG_COMPRESS_LEVEL = 1
_RIGHT_TO_LEFT = frozenset({"R", "AL"})


class TextRenderError(ValueError):
    """The text cannot be rendered faithfully; the message says why."""


@dataclass(frozen=True)
class PageStyle:
    """Canvas and font of the pages (T2Vid's defaults)."""

    width: int = 448
    height: int = 448
    font_size: int = 20
    margin: int = 20  # left margin and the right one: lines wrap at width − 2·margin
    min_font_size: int = 12  # a chunk that does not fit shrinks no further than this

    def __post_init__(self) -> None:
        if self.width <= 2 * self.margin or self.height < 1:
            raise TextRenderError(f"a {self.width}x{self.height} canvas leaves no room inside {self.margin} px margins")
        if not 1 <= self.min_font_size <= self.font_size:
            raise TextRenderError(f"font size {self.font_size} is below the minimum {self.min_font_size}")


@dataclass(frozen=True)
class Line:
    """One drawn line: its text, top-left corner and advance width in pixels, line height."""

    text: str
    x: int
    y: int
    width: float
    height: int


@dataclass(frozen=True)
class PageLayout:
    font_size: int
    lines: tuple[Line, ...]


def words_of(text: str) -> list[str]:
    return text.split()


def chunks(words: list[str], words_per_frame: int = WORDS_PER_FRAME) -> list[list[str]]:
    if words_per_frame < 1:
        raise TextRenderError(f"words per frame must be >= 1, got {words_per_frame}")
    return [words[i:i + words_per_frame] for i in range(0, len(words), words_per_frame)]


def check_glyphs(text: str) -> None:
    """Refuses text with characters the font lacks or cannot lay out, naming their scripts."""
    covered = _covered_codepoints()
    unusable: dict[str, list[str]] = {}
    for ch in dict.fromkeys(text):  # distinct characters, in order of appearance
        if ch.isspace():
            continue
        if ord(ch) not in covered or unicodedata.bidirectional(ch) in _RIGHT_TO_LEFT:
            unusable.setdefault(_script(ch), []).append(ch)
    if unusable:
        parts = [f"{script} ({len(chars)} distinct, e.g. {''.join(chars[:5])!r})" for script, chars in unusable.items()]
        raise TextRenderError(f"text needs glyphs or a right-to-left layout that {FONT_NAME} rendering lacks: "
                              + ", ".join(parts))


def layout_page(words: list[str], style: PageStyle = PageStyle()) -> PageLayout:
    """Greedy word wrap of one chunk, block centred vertically, at the largest font size from
    ``style.font_size`` down to ``style.min_font_size`` at which every line fits the canvas."""
    max_width = style.width - 2 * style.margin
    for size in range(style.font_size, style.min_font_size - 1, -1):
        font = _font(size)
        ascent, descent = font.getmetrics()
        line_height = ascent + descent
        max_lines = style.height // line_height
        wrapped = _wrap(words, size, max_width)
        if len(wrapped) > max_lines:  # measuring the drawn lines only adds lines: skip it
            continue
        lines = _measured_lines(wrapped, size, max_width)
        if len(lines) <= max_lines:
            top = (style.height - len(lines) * line_height) // 2
            return PageLayout(size, tuple(
                Line(text, style.margin, top + k * line_height, width, line_height)
                for k, (text, width) in enumerate(lines)
            ))
    raise TextRenderError(f"a chunk of {len(words)} words does not fit a {style.width}x{style.height} canvas "
                          f"even at font size {style.min_font_size}")


def draw_page(layout: PageLayout, style: PageStyle = PageStyle()) -> bytes:
    """The page as PNG bytes: black text on white, greyscale."""
    image = Image.new("L", (style.width, style.height), 255)
    draw = ImageDraw.Draw(image)
    font = _font(layout.font_size)
    for line in layout.lines:
        draw.text((line.x, line.y), line.text, fill=0, font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return out.getvalue()


def render_text(text: str, words_per_frame: int = WORDS_PER_FRAME, style: PageStyle = PageStyle()) -> list[bytes]:
    """The PNG pages of ``text``, one per chunk of ``words_per_frame`` words."""
    check_glyphs(text)
    pages = chunks(words_of(text), words_per_frame)
    if not pages:
        raise TextRenderError("text has no words")
    return [draw_page(layout_page(words, style), style) for words in pages]


def _wrap(words: list[str], size: int, max_width: int) -> list[list[str]]:
    """Greedy wrap by the summed widths of the words and spaces (cached per word)."""
    space = _width(" ", size)
    lines: list[list[str]] = []
    line: list[str] = []
    line_width = 0.0
    for word in words:
        for piece in _pieces(word, size, max_width):
            width = _width(piece, size)
            if line and line_width + space + width <= max_width:
                line.append(piece)
                line_width += space + width
            else:
                if line:
                    lines.append(line)
                line, line_width = [piece], width
    if line:
        lines.append(line)
    return lines


def _measured_lines(lines: list[list[str]], size: int, max_width: int) -> list[tuple[str, float]]:
    """(text, drawn width) of the wrapped lines. Summed word widths ignore kerning across the
    spaces: each drawn string is measured, and a line that then overflows (rare) carries its
    last word over to the next line."""
    font = _font(size)
    lines = [list(line) for line in lines]
    measured: list[tuple[str, float]] = []
    k = 0
    while k < len(lines):
        text = " ".join(lines[k])
        width = font.getlength(text)
        while width > max_width and len(lines[k]) > 1:
            carried = lines[k].pop()
            if k + 1 == len(lines):
                lines.append([])
            lines[k + 1].insert(0, carried)
            text = " ".join(lines[k])
            width = font.getlength(text)
        measured.append((text, width))
        k += 1
    return measured


def _pieces(word: str, size: int, max_width: int) -> list[str]:
    """``word``, or its consecutive pieces each at most ``max_width`` wide when it is wider."""
    if _width(word, size) <= max_width:
        return [word]
    font = _font(size)
    pieces, start = [], 0
    for end in range(1, len(word) + 1):
        if end - start > 1 and font.getlength(word[start:end]) > max_width:
            pieces.append(word[start:end - 1])
            start = end - 1
    pieces.append(word[start:])
    return pieces


@functools.lru_cache(maxsize=None)  # one font object per size and process
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_PATH), size, layout_engine=ImageFont.Layout.BASIC)


@functools.lru_cache(maxsize=1 << 16)  # words repeat a lot across pages
def _width(word: str, size: int) -> float:
    return _font(size).getlength(word)


@functools.lru_cache(maxsize=1)
def _covered_codepoints() -> frozenset[int]:
    from fontTools.ttLib import TTFont  # ships with matplotlib

    with TTFont(str(FONT_PATH), lazy=True) as font:
        return frozenset(font.getBestCmap())


def _script(ch: str) -> str:
    """A script-like name of a character: the first word of its Unicode name ("CJK", "HANGUL")."""
    name = unicodedata.name(ch, "")
    return name.split()[0] if name else f"U+{ord(ch):04X}"
