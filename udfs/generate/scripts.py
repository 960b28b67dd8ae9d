"""Unicode scripts by code point ranges, and the script each target language is written in:
what the translation check asks of a reply."""
from __future__ import annotations

from dataclasses import dataclass

# The ranges of each script framelake checks (Unicode blocks; the main ones of each script).
SCRIPT_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "Latin": ((0x41, 0x5A), (0x61, 0x7A), (0xC0, 0xD6), (0xD8, 0xF6), (0xF8, 0x24F), (0x1E00, 0x1EFF)),
    "Greek": ((0x370, 0x3FF), (0x1F00, 0x1FFF)),
    "Cyrillic": ((0x400, 0x52F),),
    "Hebrew": ((0x590, 0x5FF),),
    "Arabic": ((0x600, 0x6FF), (0x750, 0x77F), (0x8A0, 0x8FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "Devanagari": ((0x900, 0x97F),),
    "Thai": ((0xE00, 0xE7F),),
    "Hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF)),
    "Hiragana": ((0x3040, 0x309F),),
    "Katakana": ((0x30A0, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F)),
    "Han": ((0x2E80, 0x2FDF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F)),
}


@dataclass(frozen=True)
class LanguageScript:
    """A language's letters: ``scripts`` it is written in, of which ``required`` must appear
    (Japanese without kana reads as Chinese; Korean without Hangul too)."""

    name: str
    scripts: tuple[str, ...]
    required: tuple[str, ...] = ()


# Syphus's seven languages, and more; a recipe may name others with their script.
LANGUAGES: dict[str, LanguageScript] = {
    "zh": LanguageScript("Chinese", ("Han",)),
    "ja": LanguageScript("Japanese", ("Han", "Hiragana", "Katakana"), ("Hiragana", "Katakana")),
    "ko": LanguageScript("Korean", ("Hangul", "Han"), ("Hangul",)),
    "ar": LanguageScript("Arabic", ("Arabic",)),
    "es": LanguageScript("Spanish", ("Latin",)),
    "de": LanguageScript("German", ("Latin",)),
    "fr": LanguageScript("French", ("Latin",)),
    "en": LanguageScript("English", ("Latin",)),
    "it": LanguageScript("Italian", ("Latin",)),
    "pt": LanguageScript("Portuguese", ("Latin",)),
    "nl": LanguageScript("Dutch", ("Latin",)),
    "ru": LanguageScript("Russian", ("Cyrillic",)),
    "uk": LanguageScript("Ukrainian", ("Cyrillic",)),
    "el": LanguageScript("Greek", ("Greek",)),
    "he": LanguageScript("Hebrew", ("Hebrew",)),
    "hi": LanguageScript("Hindi", ("Devanagari",)),
    "th": LanguageScript("Thai", ("Thai",)),
}
SYPHUS_LANGUAGES = ("zh", "ja", "es", "de", "fr", "ko", "ar")


def script_of(char: str) -> str | None:
    """The script of one character among ``SCRIPT_RANGES``, or None (digits, punctuation, ...)."""
    point = ord(char)
    for script, ranges in SCRIPT_RANGES.items():
        if any(low <= point <= high for low, high in ranges):
            return script
    return None


def script_counts(text: str) -> dict[str, int]:
    """Letters of ``text`` per script (characters of no listed script are not counted)."""
    counts: dict[str, int] = {}
    for char in text:
        script = script_of(char)
        if script is not None:
            counts[script] = counts.get(script, 0) + 1
    return counts


def script_problem(text: str, language: LanguageScript, min_share: float) -> str | None:
    """Why ``text`` is not written in ``language``'s script, or None. At least ``min_share`` of
    its letters must be in the language's scripts (names and terms may stay in Latin), and one
    of its ``required`` scripts must appear."""
    counts = script_counts(text)
    letters = sum(counts.values())
    if not letters:
        return f"wrong script: no letters, expected {language.name} ({'/'.join(language.scripts)})"
    share = sum(counts.get(s, 0) for s in language.scripts) / letters
    if share < min_share:
        found = max(counts, key=counts.get)
        return (f"wrong script: {share:.0%} of the letters are {'/'.join(language.scripts)}, expected "
                f"{language.name} (mostly {found})")
    if language.required and not any(counts.get(s) for s in language.required):
        return f"wrong script: no {'/'.join(language.required)} letters, expected {language.name}"
    return None
