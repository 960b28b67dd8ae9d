"""The S3 test server's names and credentials (the server itself is a fixture in conftest),
and the demo corpus uploaded to it."""
from __future__ import annotations

import os
import socket

from tests.support.paths import REPO

TEST_ACCESS_KEY = "FRAMELAKETESTKEY0001"
TEST_SECRET_KEY = "framelake-test-secret-0001-do-not-leak"
BUCKET = "framelake-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def upload_demo(client) -> None:
    for folder, _, files in os.walk(REPO / "demo"):
        for name in files:
            path = os.path.join(folder, name)
            client.upload_file(path, BUCKET, "corpus/" + os.path.relpath(path, REPO / "demo"))


def s3_sources(demo_sources) -> list[dict]:
    """The demo's sources, pointed at the uploaded copy of the corpus."""
    local_root = str(REPO / "demo")
    remote = f"s3://{BUCKET}/corpus"
    return [
        {"name": s.name, "format": s.format, "annotations": s.annotations.replace(local_root, remote),
         "media_root": s.media_root.replace(local_root, remote),
         **({"media_type": s.media_type} if s.media_type else {})}
        for s in demo_sources
    ]
