"""The node's request budget survives a fork taken while another thread was inside ``acquire``
(a loader worker forked while the read-ahead thread held the bucket's lock): with ``flock`` the
child inherited the lock and every process of the node waited for ever."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from datalake.store.ratelimit import NodeTokenBucket


def test_a_child_forked_while_a_thread_holds_the_lock_can_take_tokens(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = NodeTokenBucket(tmp_path / "requests.bucket", rate=50.0)
    bucket.acquire()
    inside, go_on = threading.Event(), threading.Event()
    parent, real_pread = os.getpid(), os.pread

    def slow_pread(fd: int, n: int, off: int) -> bytes:  # the holder thread stops inside the lock
        if os.getpid() == parent and threading.current_thread().name == "holder":
            inside.set()
            go_on.wait(10)
        return real_pread(fd, n, off)

    monkeypatch.setattr(os, "pread", slow_pread)
    holder = threading.Thread(target=bucket.acquire, name="holder")
    holder.start()
    assert inside.wait(10)
    pid = os.fork()
    if pid == 0:  # the child, forked with the lock held by the parent's thread
        signal.alarm(10)
        try:
            NodeTokenBucket(bucket.path, rate=50.0).acquire()
        finally:
            os._exit(0)
    time.sleep(0.2)
    go_on.set()
    holder.join(10)
    t0 = time.monotonic()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child killed by its alarm: {status}"
    assert time.monotonic() - t0 < 8
    assert bucket.acquire() < 1.0  # and the parent goes on too
