"""T2Vid's text rendering: long text as a sequence of page images (a "text video").

T2Vid (``utils/text-to-images/t2vid.py``) word-tokenizes the text, cuts it into chunks of 115
tokens and draws each chunk black on white on a 448×448 canvas at font size 20, greedily
wrapped to width − 40 at x = 20, the text block vertically centred, one PNG per chunk.

Differences, on purpose:
- Words are whitespace-separated runs (``str.split``). T2Vid's word tokenizer counts
  punctuation as tokens of its own, so its 115-token chunks hold slightly fewer words.
- Han and Kana, written without spaces, are cut between characters, into lines and into
  pages: a page holds ``CJK_CHARS_PER_FRAME`` CJK characters where it would hold 115 words,
  about the same number of Llama 3 and Qwen2 tokens (docs/measurements.md). Hangul syllables
  count the same way, but Korean wraps at its spaces. Closing punctuation stays with the
  character before it, opening punctuation with the one after.
- Fonts come from installed packages, never from the system, each found without importing
  it: DejaVu Sans (matplotlib's) for Latin, Greek, Cyrillic and most symbols; Noto Sans CJK
  (``cvttf-notosanscjk-regular``, one OTF for Han, Kana and Hangul); Noto Sans Arabic
  (``fontpkg-noto-sans-arabic``). Each character is drawn by the first font that has it
  (Arabic script and right-to-left letters try Noto Sans Arabic first); punctuation, digits
  and spaces stay in the font of the character before them when it has them. A character no
  font has is drawn as U+FFFD (most emoji); one that shows nothing by itself (a variation
  selector, a joiner, a skin-tone modifier) is left out.
- DejaVu Sans and Noto Sans CJK are drawn with Pillow's basic layout; Noto Sans Arabic, and
  any right-to-left run, with raqm (shaping, joining forms). Lines are ordered by the Unicode
  bidirectional algorithm (rules W1–W7, N1–N2, I1–I2, L2; no explicit embeddings); the pages
  of a text most of whose letters are right-to-left are right-aligned. So the same text gives
  byte-identical PNGs wherever the same Pillow and font packages are installed.
- Every word stays inside the canvas: a word wider than a line is broken across lines; a
  chunk taller than the canvas is drawn at a smaller font size, down to ``min_font_size``, and
  what still does not fit there goes on to the next page. Only text a single character or
  line of which does not fit the canvas at ``min_font_size`` is refused.
- Pages are greyscale PNGs encoded in memory (fast zlib level): drawing and encoding are one
  step, with the font objects, word widths and font choices reused by the process.
"""
from __future__ import annotations

import bisect
import functools
import importlib.util
import io
import itertools
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageFont, features

WORDS_PER_FRAME = 115
# CJK characters a page holds where it holds WORDS_PER_FRAME words: the same token cost
# (docs/measurements.md, "CJK characters per page").
CJK_CHARS_PER_FRAME = 165
REPLACEMENT = "\ufffd"
# zlib level 1: PNGs a little bigger than level 6, encoded several times faster; still lossless.
_PNG_COMPRESS_LEVEL = 1


class TextRenderError(ValueError):
    """The text cannot be rendered faithfully; the message says why."""


@dataclass(frozen=True)
class Face:
    """A font file inside an installed package."""

    name: str
    module: str  # the package holding the file: found by importlib, never imported
    file: str  # relative to the package's folder
    distribution: str  # what to install when it is missing
    shaped: bool = False  # always laid out by raqm (joining scripts), not Pillow's basic layout


LATIN = Face("DejaVu Sans", "matplotlib", "mpl-data/fonts/ttf/DejaVuSans.ttf", "matplotlib")
CJK = Face("Noto Sans CJK TC", "cvttf_NotoSansCJK_Regular", "NotoSansCJKtc-Regular.otf", "cvttf-notosanscjk-regular")
ARABIC = Face("Noto Sans Arabic", "fontpkg_noto_sans_arabic", "files/NotoSansArabic[wdth,wght].ttf",
              "fontpkg-noto-sans-arabic", shaped=True)
# The order in which fonts are tried for a character, by the character's script.
_FALLBACKS = (LATIN, CJK, ARABIC)
_RIGHT_TO_LEFT_FALLBACKS = (ARABIC, LATIN, CJK)


def font_path(face: Face) -> Path:
    """The font file of ``face`` in its installed package."""
    spec = importlib.util.find_spec(face.module)
    path = Path(next(iter(spec.submodule_search_locations))) / face.file if spec else None
    if path is None or not path.is_file():
        raise TextRenderError(f"the {face.name} font is not installed: pip install {face.distribution}")
    return path


FONT_PATH = font_path(LATIN)


@dataclass(frozen=True)
class PageStyle:
    """Canvas and font of the pages (T2Vid's defaults)."""

    width: int = 448
    height: int = 448
    font_size: int = 20
    margin: int = 20  # left margin and the right one: lines wrap at width − 2·margin
    min_font_size: int = 12  # a chunk that does not fit shrinks no further; the rest goes on the next page

    def __post_init__(self) -> None:
        if self.width <= 2 * self.margin or self.height < 1:
            raise TextRenderError(f"a {self.width}x{self.height} canvas leaves no room inside {self.margin} px margins")
        if not 1 <= self.min_font_size <= self.font_size:
            raise TextRenderError(f"font size {self.font_size} is below the minimum {self.min_font_size}")


@dataclass(frozen=True)
class Run:
    """Consecutive characters of a line in one font and direction, where they are drawn."""

    text: str  # in logical order; raqm lays out a right-to-left run
    face: Face
    x: float
    y: int
    rtl: bool


@dataclass(frozen=True)
class Line:
    """One drawn line: its text (logical order), top-left corner and advance width in pixels,
    line height, and its runs in visual order."""

    text: str
    x: float
    y: int
    width: float
    height: int
    runs: tuple[Run, ...]


@dataclass(frozen=True)
class PageLayout:
    font_size: int
    lines: tuple[Line, ...]


class Unit(NamedTuple):
    """What a line may break before: a word, or a piece of one (a CJK character, a part of a
    word too wide for a line). ``spaced``: a space separates it from the unit before."""

    text: str
    spaced: bool


def words_of(text: str) -> list[str]:
    """The whitespace words of ``text`` that draw something."""
    return [word for word in text.split() if _word(word).units]


def chunks(words: list[str], words_per_frame: int = WORDS_PER_FRAME) -> list[list[str]]:
    """The words of each page: ``words_per_frame`` words, or as many CJK characters as cost
    the same (a CJK word is cut between characters across pages)."""
    if words_per_frame < 1:
        raise TextRenderError(f"words per frame must be >= 1, got {words_per_frame}")
    return list(_chunks(words, words_per_frame))


def drawable_text(text: str) -> str:
    """``text`` as it is drawn: characters no font has replaced by U+FFFD, those that show
    nothing by themselves left out."""
    return "".join(_drawable_char(ch) for ch in text)


def font_of(ch: str) -> Face | None:
    """The font that draws ``ch`` on its own (None: it is replaced or left out)."""
    return _char_face(ch)


def is_rtl(words: list[str]) -> bool:
    """Whether most letters of ``words`` are of right-to-left scripts (right-aligned pages)."""
    return sum(_word(word).rtl_balance for word in words) > 0


def layout_page(words: list[str], style: PageStyle = PageStyle(), rtl: bool | None = None) -> PageLayout:
    """Greedy wrap of one chunk, block centred vertically, at the largest font size from
    ``style.font_size`` down to ``style.min_font_size`` at which every line fits the canvas."""
    units = _units_of(words)
    layout, _ = _fit(units, style, is_rtl(words) if rtl is None else rtl, overflow=False)
    if layout is None:
        raise TextRenderError(f"a chunk of {len(words)} words does not fit a {style.width}x{style.height} canvas "
                              f"even at font size {style.min_font_size}")
    return layout


def layout_pages(words: list[str], style: PageStyle = PageStyle(), rtl: bool | None = None) -> list[PageLayout]:
    """The pages of one chunk: one, or more when it does not fit at ``style.min_font_size``
    (each filled at that size, the rest laid out afresh)."""
    rtl = is_rtl(words) if rtl is None else rtl
    units, pages = _units_of(words), []
    while units:
        layout, units = _fit(units, style, rtl, overflow=True)
        pages.append(layout)
    return pages


def draw_page(layout: PageLayout, style: PageStyle = PageStyle()) -> bytes:
    """The page as PNG bytes: black text on white, greyscale."""
    image = Image.new("L", (style.width, style.height), 255)
    draw = ImageDraw.Draw(image)
    for line in layout.lines:
        for run in line.runs:
            font = _face_font(run.face, layout.font_size, run.rtl)
            if font.layout_engine == ImageFont.Layout.RAQM:
                draw.text((run.x, run.y), run.text, fill=0, font=font, direction="rtl" if run.rtl else "ltr")
            else:
                draw.text((run.x, run.y), run.text, fill=0, font=font)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=_PNG_COMPRESS_LEVEL)
    return out.getvalue()


def render_text(text: str, words_per_frame: int = WORDS_PER_FRAME, style: PageStyle = PageStyle(),
                max_pages: int | None = None) -> list[bytes]:
    """The PNG pages of ``text``, one per chunk of ``words_per_frame`` words (or more for a
    chunk that does not fit); over ``max_pages`` pages it is refused before any is drawn."""
    if words_per_frame < 1:
        raise TextRenderError(f"words per frame must be >= 1, got {words_per_frame}")
    words = words_of(text)
    if not words:
        raise TextRenderError("text has no words")
    rtl = is_rtl(words)
    layouts: list[PageLayout] = []
    # Chunks are cut lazily, so a huge text is refused after max_pages + 1 of them.
    for page_words in itertools.islice(_chunks(words, words_per_frame), None if max_pages is None else max_pages + 1):
        layouts.extend(layout_pages(page_words, style, rtl))
        if max_pages and len(layouts) > max_pages:
            raise TextRenderError(f"at least {len(layouts)} pages, over max_pages {max_pages}")
    return [draw_page(layout, style) for layout in layouts]


# --- characters: fonts, scripts, what may break -------------------------------------------

# Scripts written without spaces between words (Han, Kana, Bopomofo, CJK symbols and
# fullwidth forms): a line or page may break between any two of their characters.
_UNSPACED_RANGES = ((0x2E80, 0x2FFF), (0x3000, 0x303F), (0x3040, 0x30FF), (0x3100, 0x312F), (0x3190, 0x31FF),
                    (0x3200, 0x33FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F),
                    (0xFF00, 0xFFEF), (0x20000, 0x3FFFF))
_HANGUL_RANGES = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF))
_ARABIC_RANGES = ((0x0600, 0x06FF), (0x0750, 0x077F), (0x0870, 0x08FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF))
# Kana that never start a line (small kana, the prolonged sound mark, iteration marks).
_NO_BREAK_BEFORE = frozenset("ぁぃぅぇぉっゃゅょゎゕゖァィゥェォッャュョヮヵヶ"
                             "ㇰㇱㇲㇳㇴㇵㇶㇷㇸㇹㇺㇻㇼㇽㇾㇿーゝゞヽヾ々〻")
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_ATTACHED = ("Mn", "Me", "Cf", "Cc", "Cs")
_RIGHT_TO_LEFT = frozenset({"R", "AL"})


def _in_ranges(ranges: tuple[tuple[int, int], ...], ch: str) -> bool:
    code = ord(ch)
    k = bisect.bisect_right(ranges, (code, 0x10FFFF)) - 1
    return k >= 0 and ranges[k][0] <= code <= ranges[k][1]


@functools.lru_cache(maxsize=None)
def _unspaced(ch: str) -> bool:
    return _in_ranges(_UNSPACED_RANGES, ch)


@functools.lru_cache(maxsize=None)
def _counts_as_cjk(ch: str) -> bool:
    return _unspaced(ch) or _in_ranges(_HANGUL_RANGES, ch)


@functools.lru_cache(maxsize=None)  # per font and process: a cmap is read once
def _coverage(face: Face) -> frozenset[str]:
    from fontTools.ttLib import TTFont  # ships with matplotlib

    with TTFont(str(font_path(face)), lazy=True) as font:
        return frozenset(map(chr, font.getBestCmap()))


@functools.lru_cache(maxsize=1)
def _plain_chars() -> frozenset[str]:
    """Characters the primary font draws alone, left to right: a word of only these is laid
    out as before fallback fonts existed."""
    return frozenset(ch for ch in _coverage(LATIN)
                     if unicodedata.bidirectional(ch) not in ("R", "AL", "AN")
                     and not _counts_as_cjk(ch) and not _in_ranges(_ARABIC_RANGES, ch))


@functools.lru_cache(maxsize=1 << 16)  # words repeat a lot across pages
def _plain(text: str) -> bool:
    return _plain_chars().issuperset(text)


@functools.lru_cache(maxsize=None)  # per character and process, not per draw
def _char_face(ch: str) -> Face | None:
    right_to_left = unicodedata.bidirectional(ch) in _RIGHT_TO_LEFT or _in_ranges(_ARABIC_RANGES, ch)
    return next((face for face in (_RIGHT_TO_LEFT_FALLBACKS if right_to_left else _FALLBACKS)
                 if ch in _coverage(face)), None)


@functools.lru_cache(maxsize=None)
def _drawable_char(ch: str) -> str:
    if _char_face(ch) is not None:
        return ch
    return "" if _attaches(ch) or ord(ch) in _SKIN_TONES else REPLACEMENT


def _takes_face_before(ch: str) -> bool:
    """Punctuation, digits, symbols, spaces and marks stay in the font of the character before."""
    return not unicodedata.category(ch).startswith("L")


def _faces(text: str) -> list[Face]:
    faces: list[Face] = []
    previous = None
    for ch in text:
        face = _char_face(ch)
        if previous is not None and face is not previous and _takes_face_before(ch) and ch in _coverage(previous):
            face = previous
        faces.append(face)
        previous = face
    return faces


def _faces_used(text: str) -> set[Face]:
    """Every font a character of ``text`` may be drawn in."""
    return {LATIN} if _plain(text) else {_char_face(ch) for ch in text} | {LATIN}


def _may_break_between(before: str, after: str) -> bool:
    if not (_unspaced(before) or _unspaced(after)):
        return False
    if after in _NO_BREAK_BEFORE or _attaches(after) or unicodedata.category(after) in ("Pe", "Pf", "Po"):
        return False
    return unicodedata.category(before) not in ("Ps", "Pi")


# --- words: units, page cost, direction ---------------------------------------------------

class _Word(NamedTuple):
    units: tuple[str, ...]  # the first is spaced from the word before, the others are not
    cost: int  # in 1 / (WORDS_PER_FRAME · CJK_CHARS_PER_FRAME) of a page
    rtl_balance: int  # right-to-left letters minus left-to-right ones


@functools.lru_cache(maxsize=1 << 16)
def _word(word: str) -> _Word:
    plain = _plain(word)
    text = word if plain else drawable_text(word)
    if all(map(_attaches, text)):  # draws nothing
        return _Word((), 0, 0)
    if plain:
        return _Word((word,), CJK_CHARS_PER_FRAME, 0)
    units, start = [], 0
    for k in range(1, len(text)):
        if _may_break_between(text[k - 1], text[k]):
            units.append(text[start:k])
            start = k
    units.append(text[start:])
    balance = sum((bidi in _RIGHT_TO_LEFT) - (bidi == "L") for bidi in map(unicodedata.bidirectional, text))
    return _Word(tuple(units), sum(map(_unit_cost, units)), balance)


@functools.lru_cache(maxsize=1 << 16)
def _unit_cost(unit: str) -> int:
    """A CJK character costs a page's share of CJK_CHARS_PER_FRAME characters, anything else
    in the unit one word's share of WORDS_PER_FRAME words."""
    cjk = sum(map(_counts_as_cjk, unit))
    other = any(ch.isalnum() and not _counts_as_cjk(ch) for ch in unit)
    return cjk * WORDS_PER_FRAME + (CJK_CHARS_PER_FRAME if other or not cjk else 0)


def _chunks(words: list[str], words_per_frame: int) -> Iterator[list[str]]:
    budget = words_per_frame * CJK_CHARS_PER_FRAME
    page: list[str] = []
    used = 0
    for word in words:
        info = _word(word)
        if used + info.cost <= budget:
            page.append(word)
            used += info.cost
            continue
        if len(info.units) == 1:  # cannot be cut: starts the next page
            if page:
                yield page
            page, used = [word], info.cost
            continue
        part = ""  # the word, cut between its units across pages
        for unit in info.units:
            cost = _unit_cost(unit)
            if used + cost > budget and (page or part):
                if part:
                    page.append(part)
                yield page
                page, used, part = [], 0, ""
            part += unit
            used += cost
        page.append(part)
    if page:
        yield page


def _units_of(words: list[str]) -> list[Unit]:
    return [Unit(text, k == 0) for word in words for k, text in enumerate(_word(word).units)]


# --- fonts and measures -------------------------------------------------------------------

@functools.lru_cache(maxsize=None)  # one font object per size and process
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(FONT_PATH), size, layout_engine=ImageFont.Layout.BASIC)


@functools.lru_cache(maxsize=None)
def _face_font(face: Face, size: int, rtl: bool = False) -> ImageFont.FreeTypeFont:
    """The font object of a run: raqm for shaped faces and right-to-left runs."""
    if not (face.shaped or rtl):
        return _font(size) if face is LATIN else ImageFont.truetype(str(font_path(face)), size,
                                                                     layout_engine=ImageFont.Layout.BASIC)
    if not features.check("raqm"):
        raise TextRenderError(f"{face.name} and right-to-left text need Pillow with raqm, which this Pillow lacks")
    return ImageFont.truetype(str(font_path(face)), size, layout_engine=ImageFont.Layout.RAQM)


@functools.lru_cache(maxsize=None)
def _metrics(face: Face, size: int) -> tuple[int, int]:
    return _face_font(face, size).getmetrics()


def _run_length(text: str, face: Face, size: int, rtl: bool) -> float:
    font = _face_font(face, size, rtl)
    if font.layout_engine == ImageFont.Layout.RAQM:
        return font.getlength(text, direction="rtl" if rtl else "ltr")
    return font.getlength(text)


def _length(text: str, size: int, rtl: bool) -> float:
    """Advance width of ``text`` alone on a line of a left-to-right or right-to-left page."""
    if _plain(text):
        return _font(size).getlength(text)
    return sum(run.width for run in _runs(text, size, rtl))


@functools.lru_cache(maxsize=1 << 16)  # words repeat a lot across pages
def _width(word: str, size: int, rtl: bool = False) -> float:
    return _length(word, size, rtl)


class _RunSpan(NamedTuple):
    text: str
    face: Face
    level: int
    width: float


def _runs(text: str, size: int, rtl: bool) -> list[_RunSpan]:
    """The runs of one line in visual order (left to right)."""
    levels = bidi_levels(text, 1 if rtl else 0)
    spans: list[_RunSpan] = []
    start = 0
    faces = _faces(text)
    for k in range(1, len(text) + 1):
        if k == len(text) or faces[k] is not faces[start] or levels[k] != levels[start]:
            piece, face, level = text[start:k], faces[start], levels[start]
            spans.append(_RunSpan(piece, face, level, _run_length(piece, face, size, level % 2 == 1)))
            start = k
    return _reorder(spans)


def _reorder(spans: list[_RunSpan]) -> list[_RunSpan]:
    """Rule L2: from the highest level down to the lowest odd one, reverse every sequence of
    runs at that level or higher."""
    if not spans:
        return spans
    highest = max(span.level for span in spans)
    lowest_odd = min((span.level for span in spans if span.level % 2), default=highest + 1)
    for level in range(highest, lowest_odd - 1, -1):
        out, k = [], 0
        while k < len(spans):
            if spans[k].level >= level:
                end = k
                while end < len(spans) and spans[end].level >= level:
                    end += 1
                out.extend(reversed(spans[k:end]))
                k = end
            else:
                out.append(spans[k])
                k += 1
        spans = out
    return spans


def bidi_levels(text: str, base: int) -> list[int]:
    """Embedding levels of the characters of one line at paragraph level ``base`` (0 or 1):
    UAX #9's rules W1–W7, N1–N2 and I1–I2, without explicit embeddings, overrides or isolates
    (drawn as neutrals); boundary neutrals (joiners) follow the character before, as marks."""
    sos = "R" if base else "L"
    types: list[str] = []
    previous, last_strong = sos, sos
    for ch in text:
        bidi = unicodedata.bidirectional(ch) or "L"
        if bidi in ("NSM", "BN"):  # W1
            bidi = previous
        previous = bidi
        if bidi in ("L", "R", "AL"):
            last_strong = bidi
        elif bidi == "EN" and last_strong == "AL":  # W2
            bidi = "AN"
        types.append("R" if bidi == "AL" else bidi)  # W3
    n = len(types)
    for k in range(1, n - 1):  # W4
        if types[k] == "ES" and types[k - 1] == types[k + 1] == "EN":
            types[k] = "EN"
        elif types[k] == "CS" and types[k - 1] == types[k + 1] and types[k - 1] in ("EN", "AN"):
            types[k] = types[k - 1]
    for k in range(n):  # W5: terminators next to European numbers
        if types[k] == "ET":
            end = k
            while end < n and types[end] == "ET":
                end += 1
            if (k > 0 and types[k - 1] == "EN") or (end < n and types[end] == "EN"):
                types[k:end] = ["EN"] * (end - k)
    last_strong = sos
    for k in range(n):
        if types[k] in ("ES", "ET", "CS"):  # W6
            types[k] = "ON"
        if types[k] in ("L", "R"):
            last_strong = types[k]
        elif types[k] == "EN" and last_strong == "L":  # W7
            types[k] = "L"
    strong = ["R" if t in ("R", "EN", "AN") else "L" if t == "L" else None for t in types]
    k = 0
    while k < n:  # N1, N2: a run of neutrals between strong types
        if strong[k] is not None:
            k += 1
            continue
        end = k
        while end < n and strong[end] is None:
            end += 1
        before = strong[k - 1] if k > 0 else sos
        after = strong[end] if end < n else sos
        resolved = before if before == after else ("R" if base else "L")
        types[k:end] = [resolved] * (end - k)
        k = end
    if base:  # I2
        return [base + (t in ("L", "EN", "AN")) for t in types]
    return [2 if t in ("AN", "EN") else 1 if t == "R" else 0 for t in types]  # I1


# --- lines and pages ----------------------------------------------------------------------

def _pieces(text: str, size: int, max_width: int, rtl: bool) -> list[str]:
    """``text``, or its consecutive pieces each at most ``max_width`` wide when it is wider
    (one character may be wider; a piece never starts with a mark or a joiner)."""
    if _width(text, size, rtl) <= max_width:
        return [text]
    plain = _plain(text)
    if plain:
        length = _font(size).getlength
    else:
        def length(piece: str) -> float:
            return _length(piece, size, rtl)
    pieces, start = [], 0
    while True:
        # The first end past which the piece is too wide: a prefix only grows with its end,
        # so a binary search finds what a scan of every end would.
        ends = range(start + 2, len(text) + 1)
        k = bisect.bisect_left(ends, True, key=lambda end: length(text[start:end]) > max_width)
        if k == len(ends):
            break
        end = ends[k]
        cut = end - 1 if plain else next((c for c in range(end - 1, start, -1) if not _attaches(text[c])), end - 1)
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


def _attaches(ch: str) -> bool:
    """A mark, joiner or control: part of the character before it, nothing by itself."""
    return unicodedata.category(ch) in _ATTACHED


def _wrap(units: list[Unit], size: int, max_width: int, rtl: bool) -> list[list[Unit]]:
    """Greedy wrap by the summed widths of the units and spaces (cached per unit)."""
    space = _width(" ", size)
    lines: list[list[Unit]] = []
    line: list[Unit] = []
    line_width = 0.0
    for unit in units:
        for k, piece in enumerate(_pieces(unit.text, size, max_width, rtl)):
            spaced = unit.spaced and k == 0
            width = _width(piece, size, rtl)
            gap = space if spaced else 0.0
            if line and line_width + gap + width <= max_width:
                line.append(Unit(piece, spaced))
                line_width += gap + width
            else:
                if line:
                    lines.append(line)
                line, line_width = [Unit(piece, spaced)], width
    if line:
        lines.append(line)
    return lines


class _Measured(NamedTuple):
    units: list[Unit]
    text: str
    width: float
    runs: list[_RunSpan]
    ascent: int
    descent: int


def _join(units: list[Unit]) -> str:
    return "".join((" " + u.text) if u.spaced and k else u.text for k, u in enumerate(units))


def _measure(units: list[Unit], size: int, rtl: bool) -> _Measured:
    text = _join(units)
    if not rtl and all(_plain(u.text) for u in units):
        font = _font(size)
        width = font.getlength(text)
        ascent, descent = _metrics(LATIN, size)
        return _Measured(units, text, width, [_RunSpan(text, LATIN, 0, width)], ascent, descent)
    runs = _runs(text, size, rtl)
    used = {run.face for run in runs}
    return _Measured(units, text, sum(run.width for run in runs), runs,
                     max(_metrics(face, size)[0] for face in used), max(_metrics(face, size)[1] for face in used))


def _measured_lines(lines: list[list[Unit]], size: int, max_width: int, rtl: bool) -> list[_Measured]:
    """The wrapped lines as drawn. Summed unit widths ignore kerning across the spaces and
    shaping across fonts: each drawn line is measured, and a line that then overflows (rare)
    carries its last unit over to the next line."""
    lines = [list(line) for line in lines]
    measured: list[_Measured] = []
    k = 0
    while k < len(lines):
        line = _measure(lines[k], size, rtl)
        while line.width > max_width and len(lines[k]) > 1:
            carried = lines[k].pop()
            if k + 1 == len(lines):
                lines.append([])
            lines[k + 1].insert(0, carried)
            line = _measure(lines[k], size, rtl)
        measured.append(line)
        k += 1
    return measured


def _fit(units: list[Unit], style: PageStyle, rtl: bool, overflow: bool) -> tuple[PageLayout | None, list[Unit]]:
    """(layout, units left over) at the largest size that fits. With ``overflow``, a chunk
    that fits at no size fills a page at the minimum size and returns the rest."""
    max_width = style.width - 2 * style.margin
    faces = set().union(*(_faces_used(unit.text) for unit in units)) or {LATIN}
    for size in range(style.font_size, style.min_font_size - 1, -1):
        last_chance = overflow and size == style.min_font_size
        shortest = min(sum(_metrics(face, size)) for face in faces)
        wrapped = _wrap(units, size, max_width, rtl)
        if len(wrapped) * shortest > style.height and not last_chance:
            continue  # measuring the drawn lines only adds lines: skip it
        lines = _measured_lines(wrapped, size, max_width, rtl)
        wide = next((line for line in lines if line.width > max_width), None)
        if wide is not None:  # a character wider than a line
            if size == style.min_font_size:
                raise TextRenderError(f"{wide.text[0]!r} is wider than a line ({max_width} px) "
                                      f"even at font size {size}")
            continue
        tops = list(itertools.accumulate((line.ascent + line.descent for line in lines), initial=0))
        if tops[-1] <= style.height:
            return _placed(lines, size, style, rtl), []
        if last_chance:
            fitting = next(k for k, top in enumerate(tops) if top > style.height) - 1
            if fitting == 0:
                raise TextRenderError(f"a line at font size {size} is {tops[1]} px tall, taller than the "
                                      f"{style.width}x{style.height} canvas")
            return _placed(lines[:fitting], size, style, rtl), [u for line in lines[fitting:] for u in line.units]
    return None, units


def _placed(lines: list[_Measured], size: int, style: PageStyle, rtl: bool) -> PageLayout:
    """Lines centred vertically, at the left margin (the right one on right-to-left pages),
    the runs of a line on one baseline."""
    y = (style.height - sum(line.ascent + line.descent for line in lines)) // 2
    placed = []
    for line in lines:
        x = style.width - style.margin - line.width if rtl else style.margin
        runs, run_x = [], x
        for run in line.runs:
            baseline_offset = line.ascent - _metrics(run.face, size)[0]
            runs.append(Run(run.text, run.face, run_x, y + baseline_offset, run.level % 2 == 1))
            run_x += run.width
        placed.append(Line(line.text, x, y, line.width, line.ascent + line.descent, tuple(runs)))
        y += line.ascent + line.descent
    return PageLayout(size, tuple(placed))
