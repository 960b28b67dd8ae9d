"""Paths the tests read from: the repository, the fixture files, the shipped model profiles."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
# One folder per source format, each holding annotation files written from that format.
FORMATS = FIXTURES / "formats"
PROFILE_DIR = REPO / "conf" / "models"
