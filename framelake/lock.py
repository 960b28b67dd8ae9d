"""The lake's run lock: one pipeline run writes a lake at a time.

A run holds a lease, the object ``<lake>/_locks/run.json`` (run id, host, pid, start and
heartbeat times), created only if absent: ``If-None-Match: *`` on S3, and locally a write
under an ``flock`` guard. A heartbeat thread rewrites it every ``heartbeat_s`` seconds, only
if it is still the version this run wrote (``If-Match`` on S3), and the run deletes it when it
ends. Another run finding a live lease stops with ``LakeLockedError``. A lease is stale, and
taken over by the same compare-and-swap, when its heartbeat is older than ``stale_after_s``
(measured on the store's clock: the object's modification time) or when its holder is a dead
process on this host, so a rerun right after a killed run proceeds at once.

A request whose response was lost after the store applied it (a 500 or a reset after the
write, then botocore's retry finds the precondition failed) is recognised by reading the
lease back: if it carries this run's id, this run holds it.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from typing import Iterator

from framelake.storage import Storage, is_s3, split_s3
from udfs.atomic import atomic_write

HEARTBEAT_S = 15.0
STALE_AFTER_S = 120.0  # several missed heartbeats: a paused or partitioned holder is not robbed at once


class LakeLockedError(RuntimeError):
    """Another live run holds the lake."""


class LakeLockLostError(RuntimeError):
    """This run's lease was taken over by another run (its heartbeat had stopped too long)."""


class LakeConflictError(RuntimeError):
    """A stage's Delta commits kept conflicting with another writer of the lake."""


@dataclass(frozen=True)
class Lease:
    run_id: str
    host: str
    pid: int
    started_at: float  # epoch seconds, the holder's clock (shown to users, not used for expiry)
    heartbeat_at: float

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self)).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> "Lease":
        return cls(**json.loads(data))


@dataclass(frozen=True)
class _Stored:
    lease: Lease
    version: str  # what a compare-and-swap compares: the ETag on S3, a content hash locally
    age_s: float  # since the last write, on the store's clock


class LakeLock:
    """The lease of one run on one lake. ``with LakeLock(...)`` acquires, heartbeats, releases."""

    def __init__(self, storage: Storage, lake_root: str, run_id: str | None = None, *,
                 heartbeat_s: float = HEARTBEAT_S, stale_after_s: float = STALE_AFTER_S):
        self.root = lake_root.rstrip("/")
        self.uri = f"{self.root}/_locks/run.json"
        self.run_id = run_id or uuid.uuid4().hex
        self.heartbeat_s = heartbeat_s
        self.stale_after_s = stale_after_s
        self.store = _S3Leases(storage, self.uri) if is_s3(self.uri) else _LocalLeases(self.uri)
        self.lease = Lease(self.run_id, socket.gethostname(), os.getpid(), time.time(), time.time())
        self.version: str | None = None
        self.lost_to: Lease | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "LakeLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # -- acquire -------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lease, or raise ``LakeLockedError`` naming the live holder."""
        for _ in range(8):  # each pass loses only to another run's successful write
            if self.store.create(self.lease):
                if self._adopt_if_mine(self.store.read()):
                    break
                continue
            current = self.store.read()
            if current is None:  # released between our create and our read
                continue
            if self._adopt_if_mine(current):
                break
            if not self._stale(current):
                raise LakeLockedError(self._in_use_message(current))
            if self.store.replace(self.lease, current.version) and self._adopt_if_mine(self.store.read()):
                break
        else:
            raise LakeLockedError(
                f"lake {self.root}: could not take the run lock {self.uri}: other runs keep changing it")
        self._thread = threading.Thread(target=self._heartbeats, name="framelake-lake-lock", daemon=True)
        self._thread.start()

    def _adopt_if_mine(self, stored: _Stored | None) -> bool:
        if stored is None or stored.lease.run_id != self.run_id:
            return False
        self.lease, self.version = stored.lease, stored.version
        return True

    def _stale(self, stored: _Stored) -> bool:
        if stored.age_s > self.stale_after_s:
            return True
        return stored.lease.host == socket.gethostname() and not process_alive(stored.lease.pid)

    def _in_use_message(self, stored: _Stored) -> str:
        lease = stored.lease
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(lease.started_at))
        return (f"lake {self.root} is in use by run {lease.run_id} on host {lease.host} pid {lease.pid} "
                f"since {since} (heartbeat {stored.age_s:.0f}s ago); wait for it to end (a dead run's lease "
                f"expires {self.stale_after_s:.0f}s after its last heartbeat, or delete {self.uri})")

    # -- hold ----------------------------------------------------------------------------
    def _heartbeats(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.heartbeat()
            except Exception as err:  # a store outage: the next beat tries again; expiry is minutes away
                print(f"framelake: lake lock heartbeat failed, retrying: {type(err).__name__}: {err}", flush=True)
            if self.lost_to is not None:
                return

    def heartbeat(self) -> None:
        """Refresh the lease, if this run still holds it; records a takeover in ``lost_to``."""
        beat = Lease(**{**asdict(self.lease), "heartbeat_at": time.time()})
        if self.store.replace(beat, self.version) and self._adopt_if_mine(self.store.read()):
            return
        current = self.store.read()
        if not self._adopt_if_mine(current):
            self.lost_to = current.lease if current else self.lease

    def check(self) -> None:
        """Raise ``LakeLockLostError`` if another run took the lease over."""
        if self.lost_to is not None:
            lease = self.lost_to
            raise LakeLockLostError(
                f"lake {self.root}: this run ({self.run_id}) lost its run lock to run {lease.run_id} on host "
                f"{lease.host} pid {lease.pid} (its heartbeat had stopped for over {self.stale_after_s:.0f}s); "
                "stopping before writing more")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.lost_to is None and self.version is not None:
            self.store.delete(self.version)
        self.version = None


# One lease per lake and process: nested acquisitions (a pipeline run and its stages) share it.
_HELD: dict[str, tuple[LakeLock, int]] = {}
_HELD_LOCK = threading.Lock()


@contextlib.contextmanager
def lake_lock(storage: Storage, lake_root: str, run_id: str | None = None) -> Iterator[LakeLock]:
    """Hold the lake's run lock for the block (re-entrant within a process)."""
    key = lake_root.rstrip("/")
    with _HELD_LOCK:
        held = _HELD.get(key)
        if held is not None:
            _HELD[key] = (held[0], held[1] + 1)
    if held is None:
        lock = LakeLock(storage, key, run_id)
        lock.acquire()
        with _HELD_LOCK:
            _HELD[key] = (lock, 1)
    else:
        lock = held[0]
    try:
        yield lock
    finally:
        with _HELD_LOCK:
            lock, depth = _HELD[key]
            if depth > 1:
                _HELD[key] = (lock, depth - 1)
            else:
                del _HELD[key]
        if depth == 1:
            lock.release()


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class _LocalLeases:
    """The lease as a local file. Each change runs under an exclusive ``flock`` of a guard file
    beside it, so a check and the write that depends on it are one step for every process."""

    def __init__(self, path: str):
        self.path = path
        self.guard = path + ".guard"

    @contextlib.contextmanager
    def _guarded(self) -> Iterator[None]:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.guard, "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)  # released by the kernel if this process dies
            yield

    def _read_unguarded(self) -> _Stored | None:
        try:
            with open(self.path, "rb") as stored:
                data = stored.read()
                mtime = os.fstat(stored.fileno()).st_mtime
        except FileNotFoundError:
            return None
        return _Stored(Lease.from_bytes(data), hashlib.sha256(data).hexdigest(), time.time() - mtime)

    def read(self) -> _Stored | None:
        with self._guarded():
            return self._read_unguarded()

    def _write(self, lease: Lease) -> None:
        with atomic_write(self.path) as out:
            out.write(lease.to_bytes())

    def create(self, lease: Lease) -> bool:
        with self._guarded():
            if os.path.exists(self.path):
                return False
            self._write(lease)
            return True

    def replace(self, lease: Lease, version: str | None) -> bool:
        with self._guarded():
            current = self._read_unguarded()
            if current is None or current.version != version:
                return False
            self._write(lease)
            return True

    def delete(self, version: str) -> None:
        with self._guarded():
            current = self._read_unguarded()
            if current is not None and current.version == version:
                os.unlink(self.path)


class _S3Leases:
    """The lease as an S3 object, changed only by conditional requests (create: ``If-None-Match``,
    replace and delete: ``If-Match`` on the ETag read)."""

    def __init__(self, storage: Storage, uri: str):
        self.storage = storage
        self.bucket, self.key = split_s3(uri)

    def read(self) -> _Stored | None:
        from botocore.exceptions import BotoCoreError, ClientError

        for attempt in range(self.storage.options.max_attempts):
            try:
                response = self.storage.s3.get_object(Bucket=self.bucket, Key=self.key)
                data = response["Body"].read()  # botocore retries the request, not a body cut short
                break
            except ClientError as err:
                if _code(err) in ("404", "NoSuchKey"):
                    return None
                raise
            except BotoCoreError:
                if attempt + 1 == self.storage.options.max_attempts:
                    raise
                time.sleep(0.2 * 2**attempt)
        server_now = parsedate_to_datetime(response["ResponseMetadata"]["HTTPHeaders"]["date"])
        age_s = (server_now - response["LastModified"]).total_seconds()
        return _Stored(Lease.from_bytes(data), response["ETag"], age_s)

    def _conditional(self, call, **kwargs) -> bool:
        from botocore.exceptions import ClientError

        try:
            call(Bucket=self.bucket, Key=self.key, **kwargs)
            return True
        except ClientError as err:
            # 412: the condition failed. 409: a concurrent conditional write; a 404 on delete:
            # gone already. Either way not done by this call; the caller reads the lease back.
            if _code(err) in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409",
                              "NoSuchKey", "404"):
                return False
            raise

    def create(self, lease: Lease) -> bool:
        return self._conditional(self.storage.s3.put_object, Body=lease.to_bytes(), IfNoneMatch="*")

    def replace(self, lease: Lease, version: str | None) -> bool:
        return version is not None and self._conditional(self.storage.s3.put_object, Body=lease.to_bytes(),
                                                         IfMatch=version)

    def delete(self, version: str) -> None:
        self._conditional(self.storage.s3.delete_object, IfMatch=version)


def _code(err) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))
