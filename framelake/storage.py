"""Object I/O for local paths and ``s3://`` URIs, built on boto3 (and reads of ``https://`` media).

A ``Storage`` is small and picklable: Spark ships it to executors, where each process builds
its boto3 client once. Writes are atomic: local files go through a temp name and a rename,
S3 objects appear whole on PUT.
"""
from __future__ import annotations

import contextlib
import fnmatch
import glob
import io
import os
import random
import shutil
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator
from urllib.parse import urlparse

from udfs.atomic import atomic_write

_CLIENTS: dict["StorageOptions", object] = {}
_CLIENTS_LOCK = threading.Lock()
# Per request: connecting, and waiting for the next bytes of a response. A store answering
# slowly (seconds) stays well within; a dead connection is dropped and retried.
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def split_s3(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


@dataclass(frozen=True)
class StorageOptions:
    """Where S3 lives and how to authenticate. Empty fields fall back to boto3's own chain
    (``AWS_*`` environment variables, shared config, instance role)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)
    allow_http: bool = False
    max_attempts: int = 8

    @classmethod
    def from_config(cls, section: dict | None) -> "StorageOptions":
        section = dict(section or {})
        env = os.environ
        return cls(
            endpoint_url=section.get("endpoint_url") or env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
            region=section.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
            access_key_id=section.get("access_key_id") or env.get("AWS_ACCESS_KEY_ID"),
            secret_access_key=section.get("secret_access_key") or env.get("AWS_SECRET_ACCESS_KEY"),
            session_token=section.get("session_token") or env.get("AWS_SESSION_TOKEN"),
            allow_http=bool(section.get("allow_http", False)),
            max_attempts=int(section.get("max_attempts", 8)),
        )

    def delta_rs_options(self) -> dict[str, str]:
        """The ``storage_options`` delta-rs takes for the same store."""
        options = {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_REGION": self.region or "us-east-1",
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
            "AWS_ALLOW_HTTP": "true" if self.allow_http else None,
            # The same bounds as boto3's: requests retried on 5xx, resets and timeouts with
            # exponential backoff (not a body cut off mid-transfer: object_store gives up on
            # that), and a whole-request timeout that a store answering in seconds stays within.
            "max_retries": str(self.max_attempts),
            "retry_timeout": "180s",
            "backoff_config.init_backoff": "200ms",
            "backoff_config.max_backoff": "10s",
            "connect_timeout": f"{CONNECT_TIMEOUT_S}s",
            "timeout": f"{READ_TIMEOUT_S}s",
        }
        return {k: v for k, v in options.items() if v}

    def s3a_conf(self) -> dict[str, str]:
        """The Hadoop ``fs.s3a.*`` settings (hadoop-aws, for delta-spark) for the same store.
        Path-style requests where an endpoint is given, as S3-compatible stores need. Without
        keys, the SDK's own chain (``AWS_*`` variables, profile, instance role) applies."""
        conf = {
            "fs.s3a.endpoint": self.endpoint_url,
            "fs.s3a.endpoint.region": self.region or "us-east-1",
            "fs.s3a.path.style.access": "true" if self.endpoint_url else None,
            "fs.s3a.connection.ssl.enabled": "false" if self.allow_http else None,
            "fs.s3a.attempts.maximum": str(self.max_attempts),
            "fs.s3a.connection.timeout": f"{READ_TIMEOUT_S}s",
            "fs.s3a.connection.establish.timeout": f"{CONNECT_TIMEOUT_S}s",
        }
        if self.access_key_id and self.secret_access_key:
            conf.update({
                "fs.s3a.access.key": self.access_key_id,
                "fs.s3a.secret.key": self.secret_access_key,
                "fs.s3a.session.token": self.session_token,
                "fs.s3a.aws.credentials.provider": (
                    "org.apache.hadoop.fs.s3a.TemporaryAWSCredentialsProvider" if self.session_token
                    else "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"),
            })
        return {k: v for k, v in conf.items() if v}


@dataclass(frozen=True, order=True)
class ObjectInfo:
    """A listed object. ``version`` changes whenever its content may have: the ETag on S3, the
    modification time (ns) of a local file. ``modified``: when it was last written (seconds
    since the epoch)."""

    uri: str
    size: int
    version: str
    modified: float = field(compare=False)


class Storage:
    """Read, write and list objects under local paths or ``s3://bucket/key`` URIs."""

    def __init__(self, options: StorageOptions | None = None):
        self.options = options or StorageOptions()

    # -- S3 client (one per process and option set; never pickled) --------------------------
    @property
    def s3(self):
        with _CLIENTS_LOCK:
            client = _CLIENTS.get(self.options)
            if client is None:
                client = _CLIENTS[self.options] = self._make_client()
            return client

    def _make_client(self):
        import boto3
        from botocore.config import Config

        o = self.options
        return boto3.session.Session().client(
            "s3",
            endpoint_url=o.endpoint_url,
            region_name=o.region or "us-east-1",
            aws_access_key_id=o.access_key_id,
            aws_secret_access_key=o.secret_access_key,
            aws_session_token=o.session_token,
            config=Config(
                # "standard": 500/502/503/504, throttling, resets and timeouts retried with
                # exponential backoff and jitter. Not "adaptive": its client-side rate limiter is
                # per process and slows every later request of an executor after a few 503s.
                retries={"max_attempts": o.max_attempts, "mode": "standard"},
                connect_timeout=CONNECT_TIMEOUT_S,
                read_timeout=READ_TIMEOUT_S,
                tcp_keepalive=True,
                s3={"addressing_style": "path"} if o.endpoint_url else None,
            ),
        )

    # -- reads ---------------------------------------------------------------------------
    def open_read(self, uri: str, offset: int = 0) -> BinaryIO:
        """A binary stream of the object from byte ``offset``; S3 bodies stream without loading
        the whole object (a range request when ``offset`` is set)."""
        if is_s3(uri):
            return io.BufferedReader(_ResumableBody(self, uri, offset), buffer_size=1 << 20)
        if uri.startswith("https://"):  # media a source allows by ``allow_remote_media``
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            return urllib.request.urlopen(urllib.request.Request(uri, headers=headers), timeout=READ_TIMEOUT_S)
        stream = open(uri, "rb")
        stream.seek(offset)
        return stream

    def read_bytes(self, uri: str) -> bytes:
        with contextlib.closing(self.open_read(uri)) as stream:
            return stream.read()

    def exists(self, uri: str) -> bool:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            from botocore.exceptions import ClientError

            try:
                self.s3.head_object(Bucket=bucket, Key=key)
                return True
            except ClientError as err:
                if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return os.path.exists(uri)

    def size(self, uri: str) -> int:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            return int(self.s3.head_object(Bucket=bucket, Key=key)["ContentLength"])
        return os.path.getsize(uri)

    @contextlib.contextmanager
    def local_copy(self, uri: str) -> Iterator[str]:
        """A local path holding the object; S3 objects go to temp space removed afterwards."""
        if not is_s3(uri):
            yield uri
            return
        suffix = os.path.splitext(uri)[1][:16]
        fd, path = tempfile.mkstemp(prefix="framelake-", suffix=suffix)
        os.close(fd)
        try:
            bucket, key = split_s3(uri)
            self.s3.download_file(bucket, key, path)
            yield path
        finally:
            os.unlink(path)

    def presigned_url(self, uri: str, expires_s: int = 3600) -> str:
        """An HTTP(S) URL ffmpeg can range-read. It carries credentials: never log it."""
        bucket, key = split_s3(uri)
        return self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_s
        )

    def list(self, pattern: str) -> list[str]:
        """Objects matching a file, a folder (recursive), or a glob; sorted URIs."""
        return [info.uri for info in self.list_info(pattern)]

    def list_info(self, pattern: str) -> list[ObjectInfo]:
        """Like ``list``, with each object's size and version, from the same listing."""
        if is_s3(pattern):
            return self._list_s3(pattern)
        if any(ch in pattern for ch in "*?["):
            paths = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
        elif os.path.isdir(pattern):
            paths = [os.path.join(d, f) for d, _, files in os.walk(pattern) for f in files]
        else:
            paths = [pattern] if os.path.isfile(pattern) else []
        infos = []
        for path in sorted(paths):
            try:
                stat = os.stat(path)
            except OSError:  # a dangling link: listed, and its readers say why it cannot be read
                stat = os.lstat(path)
            infos.append(ObjectInfo(path, stat.st_size, str(stat.st_mtime_ns), stat.st_mtime))
        return infos

    def _list_s3(self, pattern: str) -> list[ObjectInfo]:
        bucket, key = split_s3(pattern)
        wildcard = next((i for i, ch in enumerate(key) if ch in "*?["), None)
        prefix = key if wildcard is None else key[: key.rfind("/", 0, wildcard) + 1]
        objects = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            objects.extend(page.get("Contents", []))
        if wildcard is not None:
            objects = [o for o in objects if fnmatch.fnmatchcase(o["Key"], key)]
        elif [o["Key"] for o in objects] != [key]:
            folder = key.rstrip("/") + "/"
            objects = [o for o in objects if o["Key"] == key or o["Key"].startswith(folder)]
        return sorted(
            ObjectInfo(f"s3://{bucket}/{o['Key']}", int(o["Size"]), o["ETag"].strip('"'), o["LastModified"].timestamp())
            for o in objects if not o["Key"].endswith("/")
        )

    # -- writes --------------------------------------------------------------------------
    def write_bytes(self, uri: str, data: bytes) -> None:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            self.s3.put_object(Bucket=bucket, Key=key, Body=data)
            return
        with atomic_write(uri) as out:
            out.write(data)

    def upload_file(self, local_path: str, uri: str) -> None:
        """Put a finished local file at ``uri`` (atomically: rename or a single PUT)."""
        if is_s3(uri):
            bucket, key = split_s3(uri)
            self.s3.upload_file(local_path, bucket, key)
            return
        with open(local_path, "rb") as source, atomic_write(uri) as out:
            shutil.copyfileobj(source, out)

    @contextlib.contextmanager
    def writer(self, uri: str) -> Iterator[BinaryIO]:
        """A file to write; it appears at ``uri`` only when the block ends without error."""
        if not is_s3(uri):
            with atomic_write(uri) as out:
                yield out
            return
        with tempfile.NamedTemporaryFile(prefix="framelake-") as tmp:
            yield tmp
            tmp.flush()
            self.upload_file(tmp.name, uri)

    def delete(self, uri: str) -> None:
        if is_s3(uri):
            bucket, key = split_s3(uri)
            self.s3.delete_object(Bucket=bucket, Key=key)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(uri)


class _ResumableBody(io.RawIOBase):
    """An S3 object's body that survives a connection broken mid-transfer: botocore retries
    requests, never a body already streaming, so a failed read reopens the object where it
    stopped (a range request, bounded attempts with backoff). ``If-Match`` pins the version
    first read: an object replaced meanwhile fails the read instead of mixing two versions."""

    def __init__(self, storage: Storage, uri: str, offset: int):
        self.storage = storage
        self.bucket, self.key = split_s3(uri)
        self.offset = offset
        self.etag = None
        self.body = self._open()

    def _open(self):
        pinned = {"IfMatch": self.etag} if self.etag else {}
        ranged = {"Range": f"bytes={self.offset}-"} if self.offset else {}
        response = self.storage.s3.get_object(Bucket=self.bucket, Key=self.key, **ranged, **pinned)
        self.etag = response["ETag"]
        return response["Body"]

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        for attempt in range(self.storage.options.max_attempts):
            try:
                data = self.body.read(len(buffer))
                break
            except (BotoCoreError, HTTPError, OSError):  # a reset, a truncated body, a read timeout
                if attempt + 1 == self.storage.options.max_attempts:
                    raise
                self.body.close()
                time.sleep(min(0.2 * 2**attempt, 5.0) * random.uniform(0.5, 1.0))
                self.body = self._open()
        buffer[: len(data)] = data
        self.offset += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.body.close()
        super().close()
