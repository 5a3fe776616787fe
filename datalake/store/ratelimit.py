"""A token bucket: at most ``rate`` requests per second on average, bursts up to ``burst``.

Object stores throttle (S3 answers 503 SlowDown past a few thousand requests/s per prefix);
a client that stays under the limit never pays for the retries. ``TokenBucket`` is one
process's (thread-safe); ``NodeTokenBucket`` is shared by every process of a node through a
locked file. Both block the caller until a token is free.
"""

from __future__ import annotations

import fcntl
import os
import struct
import threading
import time
from pathlib import Path

__all__ = ["TokenBucket", "NodeTokenBucket"]


class TokenBucket:
    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate limit must be > 0 requests/s, got {rate}")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens``; sleep until they are available. Returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= tokens:
                    self._tokens -= tokens
                    return waited
                need = (tokens - self._tokens) / self.rate
            time.sleep(need)
            waited += need


_THREADS = threading.Lock()


def _fresh_lock_in_child() -> None:
    global _THREADS
    _THREADS = threading.Lock()  # a fork may copy it held by a thread the child does not have


os.register_at_fork(after_in_child=_fresh_lock_in_child)


class NodeTokenBucket:
    """One token bucket for every process of a node: its state (tokens, time) lives in a small
    file on the node's disk, updated under an exclusive POSIX record lock (``lockf``), so all
    ranks and loader workers of the node share one budget of ``rate`` requests/s. Time is
    ``CLOCK_MONOTONIC``, which every process of a machine reads alike.

    Not ``flock``: a flock belongs to the open file, so a loader worker forked while another
    thread (the read-ahead) held it inherited the lock and kept it forever -- every process of
    the node then waited (seen once in CI). A record lock is not inherited by a fork; threads of
    one process take turns on a process lock, which a forked child gets fresh."""

    def __init__(self, path: str | os.PathLike[str], rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"rate limit must be > 0 requests/s, got {rate}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        if self.burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")

    def acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` from the node's budget; sleep until they are available."""
        waited = 0.0
        while True:
            with _THREADS:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX)
                    raw = os.pread(fd, 16, 0)
                    now = time.monotonic()
                    have, last = struct.unpack("<dd", raw) if len(raw) == 16 else (self.burst, now)
                    if last > now:  # a file from before a reboot
                        have, last = self.burst, now
                    have = min(self.burst, have + (now - last) * self.rate)
                    ok = have >= tokens
                    if ok:
                        have -= tokens
                    os.pwrite(fd, struct.pack("<dd", have, now), 0)
                finally:
                    os.close(fd)  # releases the lock
            if ok:
                return waited
            need = (tokens - have) / self.rate
            time.sleep(need)
            waited += need
