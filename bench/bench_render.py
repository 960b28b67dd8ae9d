"""T2Vid text rendering: framelake's fused render + encode against T2Vid's PIL loop.

Both render the same words (the repository's own docs, repeated) into 448×448 pages of 115
words at font size 20, in one process on one core; the figure is pages per second per core.
Spark runs the adapter on every core at once, so the cluster rate is this times the cores.
The two take turns for ``ROUNDS`` rounds and ``render_vs_t2vid`` is the median of the rounds'
ratios, so a burst of load from other processes moves one round, not the figure;
``render_vs_t2vid_spread`` is the rounds' (max − min) / median. One round of 4 s alone varied
too much from run to run (docs/measurements.md).

T2Vid's loop (``utils/text-to-images/t2vid.py``), as FORMATS.md describes it: for each chunk a
new RGB image and ImageDraw, greedy wrapping by measuring ``draw.textlength`` of the growing
line for each word, the lines drawn vertically centred, the page saved as a PNG file. It is
given the same font file, loaded once, so the comparison is of the loop, not of font loading.
framelake's path is ``udfs.text_render.render_text``: font choice, cached word widths,
greyscale pages encoded in memory with a fast zlib level (and stored by the adapter after).
``render_cjk_pages_per_s_per_core`` and ``render_arabic_pages_per_s_per_core`` time the same
path on Chinese (Noto Sans CJK) and Arabic (Noto Sans Arabic, raqm) text, with no T2Vid
counterpart: T2Vid's loop draws neither.
"""
from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from udfs.text_render import FONT_PATH, WORDS_PER_FRAME, chunks, render_text, words_of

QUICK_PAGES = 150  # a round, each side
FULL_PAGES = 1500
ROUNDS = 5
SCRIPT_REPEATS = {"zh": 10, "ar": 20}  # the fixture's texts repeated: about 32 and 23 pages
REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "tests" / "fixtures" / "formats" / "t2vid_text" / "scripts_text.json"


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


def script_text(lang: str) -> str:
    """The test fixture's text in ``lang``, repeated ``SCRIPT_REPEATS[lang]`` times."""
    text = next(r["context"] for r in json.loads(SCRIPTS.read_text(encoding="utf-8")) if r["lang"] == lang)
    return " ".join([text] * SCRIPT_REPEATS[lang])


def pages_per_cpu_s(render, *args) -> float:
    started = time.process_time()
    pages = render(*args)
    return (pages if isinstance(pages, int) else len(pages)) / (time.process_time() - started)


def run(quick: bool = True) -> dict[str, float]:
    text = bench_text(QUICK_PAGES if quick else FULL_PAGES)
    render_text(" ".join(words_of(text)[:WORDS_PER_FRAME]))  # font loaded, as in a warm worker

    t2vid_rates, framelake_rates = [], []
    with tempfile.TemporaryDirectory() as out_dir:
        for _ in range(ROUNDS):
            t2vid_rates.append(pages_per_cpu_s(t2vid_loop, text, out_dir))
            framelake_rates.append(pages_per_cpu_s(render_text, text))
    ratios = [f / t for f, t in zip(framelake_rates, t2vid_rates)]
    ratio = statistics.median(ratios)

    chinese, arabic = script_text("zh"), script_text("ar")
    render_text(chinese[:200] + arabic[:200])  # the fallback fonts loaded and their cmaps read
    return {
        "render_pages_per_s_per_core": statistics.median(framelake_rates),
        "render_t2vid_pages_per_s_per_core": statistics.median(t2vid_rates),
        "render_vs_t2vid": ratio,
        "render_vs_t2vid_spread": (max(ratios) - min(ratios)) / ratio,
        "render_cjk_pages_per_s_per_core": pages_per_cpu_s(render_text, chinese),
        "render_arabic_pages_per_s_per_core": pages_per_cpu_s(render_text, arabic),
    }
