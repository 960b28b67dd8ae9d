"""Files that appear whole or not at all: written to a hidden temporary sibling, then renamed
into place. Readers never see a partial file, and a failed write leaves nothing behind.

The file gets the mode a plain ``open`` would give it (0666 less the umask: 0644 by default),
not ``mkstemp``'s 0600, so a trainer running as another user can read what the lake writes.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO


def current_umask() -> int:
    """The process umask. Read from /proc where it is shown, since setting it to read it back
    would race with threads creating files."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open("/proc/self/status", encoding="ascii") as status:
            return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, durable: bool = False) -> Iterator[IO]:
    """A file to write that appears at ``path`` when the block ends without an error; its
    folders are created. ``mode`` is "wb" or "w" (UTF-8). ``durable`` syncs the data to disk
    before the rename, for files a crash must not leave empty."""
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)[:64]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as out:
            yield out
            if durable:
                out.flush()
                os.fsync(out.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
