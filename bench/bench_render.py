"""T2Vid text rendering: framelake's fused render + encode against T2Vid's PIL loop.

Both render the same words (the repository's own docs, repeated) into 448×448 pages of 115
words at font size 20, in one process on one core; the figure is pages per second per core.
Spark runs the adapter on every core at once, so the cluster rate is this times the cores.

T2Vid's loop (``utils/text-to-images/t2vid.py``), as FORMATS.md describes it: for each chunk a
new RGB image and ImageDraw, greedy wrapping by measuring ``draw.textlength`` of the growing
line for each word, the lines drawn vertically centred, the page saved as a PNG file. It is
given the same font file, loaded once, so the comparison is of the loop, not of font loading.
framelake's path is ``udfs.text_render.render_text``: glyph check, cached word widths,
greyscale pages encoded in memory with a fast zlib level (and stored by the adapter after).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from udfs.text_render import FONT_PATH, WORDS_PER_FRAME, chunks, render_text, words_of

QUICK_PAGES = 150
FULL_PAGES = 1500
REPO = Path(__file__).resolve().parent.parent


def bench_text(pages: int) -> str:
    docs = " ".join((REPO / name).read_text(encoding="utf-8") for name in ("README.md", "docs/architecture.md"))
    words = words_of(docs)
    needed = pages * WORDS_PER_FRAME
    return " ".join((words * (needed // len(words) + 1))[:needed])


def t2vid_loop(text: str, out_dir: str, width: int = 448, height: int = 448, font_size: int = 20) -> int:
    font = ImageFont.truetype(str(FONT_PATH), font_size)
    pages = chunks(words_of(text), WORDS_PER_FRAME)
    for i, words in enumerate(pages):
        image = Image.new("RGB", (width, height), "white")
        draw = ImageDraw.Draw(image)
        lines, line = [], ""
        for word in words:
            candidate = f"{line} {word}" if line else word
            if draw.textlength(candidate, font=font) <= width - 40:
                line = candidate
            else:
                lines.append(line)
                line = word
        lines.append(line)
        ascent, descent = font.getmetrics()
        y = (height - len(lines) * (ascent + descent)) // 2
        for line in lines:
            draw.text((20, y), line, fill="black", font=font)
            y += ascent + descent
        image.save(os.path.join(out_dir, f"text_pic_{i:05d}.png"))
    return len(pages)


def run(quick: bool = True) -> dict[str, float]:
    text = bench_text(QUICK_PAGES if quick else FULL_PAGES)
    render_text(" ".join(words_of(text)[:WORDS_PER_FRAME]))  # font loaded, as in a warm worker

    with tempfile.TemporaryDirectory() as out_dir:
        started = time.process_time()
        t2vid_pages = t2vid_loop(text, out_dir)
        t2vid_s = time.process_time() - started

    started = time.process_time()
    pages = render_text(text)
    framelake_s = time.process_time() - started

    assert len(pages) == t2vid_pages
    t2vid_rate = t2vid_pages / t2vid_s
    framelake_rate = len(pages) / framelake_s
    return {
        "render_pages_per_s_per_core": framelake_rate,
        "render_t2vid_pages_per_s_per_core": t2vid_rate,
        "render_vs_t2vid": framelake_rate / t2vid_rate,
    }
