"""Failpoints: named places where a test makes a run die or fail on purpose.

Armed by ``FRAMELAKE_FAILPOINTS="name=action[@N],..."``; unset, ``failpoint(name)`` is one
dictionary lookup on an empty dict. Actions:

* ``kill``: SIGKILL this process (the driver, or on an executor the Python worker: Spark
  sees a lost task and retries it);
* ``kill-driver``: SIGKILL the driver process, from wherever the point is hit (an executor's
  Python worker mid-task included);
* ``raise``: raise ``FailpointError`` (a task fails; Spark retries it, then gives up).

``@N`` fires on the N-th hit in a process (default the first). With
``FRAMELAKE_FAILPOINTS_ONCE=DIR`` a point fires once across all processes: firing creates
``DIR/<name>`` first, and a point whose marker exists is passed over, so the retried task, or
the rerun of the same command with the same environment, goes through.

Points (where they sit):

* ``normalize.after_samples`` (driver): ``samples`` committed, ``rejects`` and
  ``source_files`` not;
* ``frames.between_commits`` (driver): a wave's ``frames`` rows committed, its ``videos`` rows not;
* ``lake.before_commit`` (driver): a write's Parquet files are under the table root, its Delta
  commit is not made (delta-rs);
* ``lake.after_spark_commit`` (driver): a delta-spark write committed, as if its response were
  lost on the way back;
* ``generate.before_commit`` (driver): a wave of replies received, not committed to
  ``generations`` yet;
* ``generate.request`` (executor): a request about to be sent;
* ``tokens.map`` (executor): in the task that counts a batch of samples' tokens;
* ``shards.after_first_shard`` (executor): a task has written its first shard in every format,
  no manifest is written yet.
"""
from __future__ import annotations

import os
import signal

ENV = "FRAMELAKE_FAILPOINTS"
ONCE_ENV = "FRAMELAKE_FAILPOINTS_ONCE"
DRIVER_PID_ENV = "FRAMELAKE_DRIVER_PID"
ACTIONS = ("kill", "kill-driver", "raise")


class FailpointError(RuntimeError):
    """Raised by a failpoint armed with ``raise``."""


def parse(spec: str) -> dict[str, tuple[str, int]]:
    """``"a=kill@2,b=raise"`` → ``{"a": ("kill", 2), "b": ("raise", 1)}``."""
    armed = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, action = item.partition("=")
        action, _, nth = action.partition("@")
        if not sep or action not in ACTIONS or (nth and not nth.isdigit()):
            raise ValueError(f"{ENV}: {item!r} is not name=action[@N] with action one of {', '.join(ACTIONS)}")
        armed[name.strip()] = (action, int(nth or 1))
    return armed


_ARMED = parse(os.environ.get(ENV, ""))
_hits: dict[str, int] = {}
if _ARMED:
    # The first process to import this is the driver (jobs import it before Spark starts);
    # executors inherit its environment, so they know whom ``kill-driver`` means.
    os.environ.setdefault(DRIVER_PID_ENV, str(os.getpid()))


def failpoint(name: str) -> None:
    """Do what ``name`` is armed for, if it is armed and this hit is the one."""
    if name not in _ARMED:
        return
    action, nth = _ARMED[name]
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] != nth or not _claim(name):
        return
    if action == "raise":
        raise FailpointError(f"failpoint {name}")
    target = int(os.environ[DRIVER_PID_ENV]) if action == "kill-driver" else os.getpid()
    os.kill(target, signal.SIGKILL)


def _claim(name: str) -> bool:
    """Whether this process may fire ``name``: always without a once-only folder, else only
    the first to create its marker."""
    folder = os.environ.get(ONCE_ENV)
    if not folder:
        return True
    os.makedirs(folder, exist_ok=True)
    try:
        os.close(os.open(os.path.join(folder, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
