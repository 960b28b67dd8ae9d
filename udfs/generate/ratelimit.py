"""Requests and tokens per minute, as token buckets shared by the threads of one task.

Each bucket refills at its rate and holds ten seconds of it (a burst of at most a sixth of
the minute's budget); a request waits until every bucket has its cost. A cost bigger than a
bucket waits for a full bucket and leaves it in debt, so big requests go through at the rate.
"""
from __future__ import annotations

import threading
import time
from typing import Callable


class _Bucket:
    def __init__(self, per_minute: float, now: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute / 6.0)
        self.level = self.capacity
        self.stamp = now

    def wait_s(self, cost: float, now: float) -> float:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        need = min(cost, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate


class RateLimiter:
    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.clock = clock
        self.sleep = sleep
        now = clock()
        self.requests = _Bucket(requests_per_minute, now) if requests_per_minute else None
        self.tokens = _Bucket(tokens_per_minute, now) if tokens_per_minute else None
        self._lock = threading.Lock()

    def acquire(self, tokens: int) -> None:
        """Wait until one request of ``tokens`` (prompt and completion at most) may go."""
        costs = [(bucket, cost) for bucket, cost in ((self.requests, 1), (self.tokens, tokens)) if bucket]
        if not costs:
            return
        while True:
            with self._lock:
                now = self.clock()
                wait = max(bucket.wait_s(cost, now) for bucket, cost in costs)
                if wait == 0.0:
                    for bucket, cost in costs:
                        bucket.level -= cost
                    return
            self.sleep(wait)
