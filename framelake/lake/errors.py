"""The lake's exceptions other modules catch, under the lake's names: callers need no deltalake."""
from __future__ import annotations

# A Delta commit that lost to another commit of the same version (delta-rs's own error).
from deltalake.exceptions import CommitFailedError as CommitConflictError

__all__ = ["CommitConflictError"]
