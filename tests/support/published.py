"""The published fixtures (tests/fixtures/published/<project>/): each folder's source settings,
and how many annotation records its files hold, counted from the files themselves."""
from __future__ import annotations

import json
from pathlib import Path

from tests.support.paths import FIXTURES

PUBLISHED = FIXTURES / "published"

# project folder -> (format, media_type) of its source
PROJECTS = {
    "ask-anything": ("videochat2", "image"),
    "timechat": ("videochat2", "video"),
    "video-chatgpt": ("videoinstruct100k", None),
    "lmms-finetune": ("llava", None),
    "llama-factory": ("messages", None),
    "minicpm-v": ("minicpmv", None),
    "videollama3": ("llava", None),
    "otter": ("mimicit", None),
    "octopus": ("mimicit", None),
}


def annotation_files(project: str) -> list[Path]:
    return sorted(p for p in (PUBLISHED / project).iterdir() if p.name != "README.md")


def records_in(path: Path) -> int:
    """The annotation records of one file: the elements of a JSON array, the lines of JSON
    lines, the ``data`` members of a MIMIC-IT instructions file; 0 for a MIMIC-IT image file
    (Parquet, or a JSON object of base64 strings)."""
    if path.suffix == ".parquet":
        return 0
    if path.suffix == ".jsonl":
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    value = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(value, dict):
        return len(value.get("data", {}))
    return len(value)


def records_of(project: str) -> int:
    return sum(records_in(path) for path in annotation_files(project))
