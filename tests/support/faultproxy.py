"""A fault-injecting reverse proxy for an S3-API server (moto in the tests) or an LLM endpoint
(llama-server).

Point a client's endpoint at ``FaultProxy.url`` and about ``rate`` of its requests fail the way
a real object store fails. Each fault is one of ``FAULTS``, or ``429-before``:

* ``500-before``, ``503-before``: an S3 error response (``InternalError``, ``SlowDown``); the
  request never reaches the server.
* ``reset-before``: the connection is reset (RST) after the request was read, before forwarding.
* ``slow``: the request is forwarded after ``slow_s`` seconds, and answered normally.
* ``500-after``, ``503-after``: the request is forwarded and *applied* (a PUT stored, a DELETE
  done), then its response is replaced by the error. S3 does this too: a 500 says nothing about
  whether the write happened, so a retried conditional PUT may find its own object (412).
* ``reset-after``: applied, then the connection is reset with no response.
* ``truncate``: applied; a response with a body gets its headers and half its body, then a
  reset (a GET broken mid-transfer). Responses without a body are reset like ``reset-after``.
* ``429-before``: a rate-limit response with ``Retry-After: <retry_after_s>``, as an LLM
  endpoint over its quota answers; never forwarded. Not in ``FAULTS`` (S3 answers 503).

``errors="json"`` gives error responses an OpenAI-style JSON body instead of S3's XML.
``script`` lists the faults of the first requests, in order (None: forwarded untouched), so a
run of a few requests surely meets each; the draws begin after it.

``truncate_except`` lists path parts (or listed prefixes) whose GETs are reset whole (``reset-after``) rather than
truncated: the tests give ``/tables/``, since delta-rs (its object_store) does not retry a body
broken mid-transfer, and framelake reads Delta logs and tables through it.

``lost_create_every`` makes every Nth create-if-absent PUT (``If-None-Match: *``: Delta
commits, the lake's lease), from the first, ``500-after`` instead of a random draw, so a run
surely meets the case where the store applied a conditional write and the client never heard
of it, and never twice in a row.

Which requests fail is drawn from ``random.Random(seed)``: the same seed gives the same fault
rate and mix, though not on the same requests, since the clients' threads interleave freely.
"""
from __future__ import annotations

import http.client
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

FAULTS = ("500-before", "503-before", "reset-before", "slow", "500-after", "503-after", "reset-after", "truncate")
RATE_LIMITED = "429-before"
_ERRORS = {500: ("InternalError", "We encountered an internal error. Please try again."),
           503: ("SlowDown", "Please reduce your request rate."),
           429: ("RateLimited", "Rate limit reached; retry after the time Retry-After says.")}
# Hop-by-hop headers are the proxy's own business, never forwarded.
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class FaultProxy:
    def __init__(self, upstream: str, *, rate: float = 0.1, seed: int = 0, faults: tuple[str, ...] = FAULTS,
                 slow_s: tuple[float, float] = (1.0, 3.0), truncate_except: tuple[str, ...] = (),
                 lost_create_every: int = 0, errors: str = "s3", retry_after_s: float = 1.0,
                 script: tuple[str | None, ...] = ()):
        unknown = (set(faults) | set(script)) - {*FAULTS, RATE_LIMITED, None}
        if unknown:
            raise ValueError(f"unknown faults {sorted(unknown)} (known: {', '.join((*FAULTS, RATE_LIMITED))})")
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname, parsed.port or 80)
        self.rate = rate
        self.faults = faults
        self.slow_s = slow_s
        self.truncate_except = truncate_except
        self.lost_create_every = lost_create_every
        self.errors = errors
        self.retry_after_s = retry_after_s
        self.script = list(script)
        self.creates = 0
        self.requests = 0
        self.injected: Counter[str] = Counter()  # fault -> requests it was injected in
        self.by_method: Counter[tuple[str, str]] = Counter()  # (method, fault) -> count
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="faultproxy", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def draw(self, method: str, path: str, create: bool = False) -> tuple[str | None, float]:
        """The fault for the next request (None: forward it untouched) and the delay of a slow one.
        ``create``: the request is a create-if-absent PUT."""
        with self._lock:
            self.requests += 1
            self.creates += create
            if create and self.lost_create_every and (self.creates - 1) % self.lost_create_every == 0:
                self.injected["500-after"] += 1
                self.by_method[method, "500-after"] += 1
                return "500-after", 0.0
            if self.script:
                fault = self.script.pop(0)
                if fault is None:
                    return None, 0.0
            elif self._random.random() >= self.rate:
                return None, 0.0
            else:
                fault = self._random.choice(self.faults)
            if fault == "truncate" and any(part in unquote(path) for part in self.truncate_except):  # LIST prefixes too
                fault = "reset-after"
            self.injected[fault] += 1
            self.by_method[method, fault] += 1
            return fault, self._random.uniform(*self.slow_s)

    def report(self) -> str:
        total = sum(self.injected.values())
        lines = [f"requests proxied: {self.requests}, faults injected: {total}"]
        lines += [f"  {fault:<13} {self.injected[fault]:>5}" for fault in (*FAULTS, RATE_LIMITED)
                  if self.injected[fault]]
        if self.lost_create_every:
            lost = -(-self.creates // self.lost_create_every)
            lines.append(f"create-if-absent PUTs: {self.creates}, {lost} of them lost (500-after, counted above)")
        return "\n".join(lines)


def _handler(proxy: FaultProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: clients pool connections, and resets hit those pools

        def log_message(self, *args) -> None:  # quiet: the counters say what happened
            pass

        def _forward(self, method: str) -> None:
            try:
                self._proxy(method)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up on this one (ffmpeg seeks)
                self.close_connection = True

        def _proxy(self, method: str) -> None:
            body = self._read_body()
            fault, delay = proxy.draw(method, self.path, self.headers.get("If-None-Match") == "*")
            if fault == "reset-before":
                return self._reset()
            if fault in ("500-before", "503-before", RATE_LIMITED):
                return self._error(int(fault[:3]))
            if fault == "slow":
                time.sleep(delay)
            status, reason, headers, payload = self._upstream(method, body)
            if fault in ("500-after", "503-after"):
                return self._error(int(fault[:3]))
            if fault == "reset-after" or (fault == "truncate" and len(payload) < 2):
                return self._reset()
            self.send_response_only(status, reason)
            for name, value in headers:
                if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            length = headers_length(headers, payload) if method == "HEAD" else len(payload)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            if fault == "truncate":
                self.wfile.write(payload[: len(payload) // 2])
                self.wfile.flush()
                return self._reset()
            if method != "HEAD":
                self.wfile.write(payload)

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    chunk = self.rfile.read(size + 2)[:size]  # each chunk ends in CRLF
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                            pass
                        return b"".join(chunks)
                    chunks.append(chunk)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _upstream(self, method: str, body: bytes):
            connection = http.client.HTTPConnection(*proxy.upstream, timeout=120)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or method in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                connection.request(method, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                return response.status, response.reason, response.getheaders(), payload
            finally:
                connection.close()

        def _error(self, status: int) -> None:
            code, message = _ERRORS[status]
            if proxy.errors == "json":
                body = json.dumps({"error": {"code": status, "type": code, "message": message}}).encode()
            else:
                body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                        f"<Message>{message}</Message></Error>").encode()
            self.send_response_only(status)
            self.send_header("Content-Type", "application/json" if proxy.errors == "json" else "application/xml")
            if status == 429:
                self.send_header("Retry-After", f"{proxy.retry_after_s:g}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _reset(self) -> None:
            # SO_LINGER with a zero timeout makes close() send an RST, not a FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

        def do_GET(self):
            self._forward("GET")

        def do_HEAD(self):
            self._forward("HEAD")

        def do_PUT(self):
            self._forward("PUT")

        def do_POST(self):
            self._forward("POST")

        def do_DELETE(self):
            self._forward("DELETE")

    return Handler


def headers_length(headers: list[tuple[str, str]], payload: bytes) -> int:
    """A HEAD response's Content-Length: the object's size the server announced."""
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value)
    return len(payload)
