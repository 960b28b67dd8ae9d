"""The lake's exceptions other modules catch: callers need to know neither engine."""
from __future__ import annotations


class CommitConflictError(Exception):
    """A Delta commit lost to another commit (delta-rs's CommitFailedError, delta-spark's
    ``io.delta.exceptions.Concurrent*``): the stage is rerun, which resumes from the tables."""


class EngineError(RuntimeError):
    """The configured engine cannot run in this session (e.g. delta-spark without its jars)."""
