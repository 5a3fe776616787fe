"""One contract suite over every store backend, plus S3 retries, multipart and rate limits."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from datalake.store import (
    LocalStore,
    ObjectNotFound,
    S3Options,
    S3Store,
    Store,
    StoreError,
    TokenBucket,
    open_store,
)
from tests.conftest import FaultProxy, make_s3_store


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "local":
        return LocalStore(tmp_path / "lake")
    return make_s3_store(request.getfixturevalue("s3_endpoint"))


def test_contract_put_read_range_list_delete_copy(store: Store) -> None:
    data = bytes(range(256)) * 40
    store.put("a/b/obj.bin", data)
    store.put("a/bc/other.bin", b"x")
    store.put("top.txt", b"hello")
    assert store.read("a/b/obj.bin") == data
    assert store.read_range("a/b/obj.bin", 1000, 300) == data[1000:1300]
    assert store.read_range("a/b/obj.bin", len(data) - 5, 5) == data[-5:]
    assert store.size("a/b/obj.bin") == len(data)
    assert store.exists("a/b/obj.bin") and not store.exists("a/b/nope")
    assert list(store.list("a/b")) == ["a/b/obj.bin"]  # not a/bc
    assert list(store.list("")) == ["a/b/obj.bin", "a/bc/other.bin", "top.txt"]
    with store.open("a/b/obj.bin") as f:
        assert f.read(10) == data[:10]
        assert f.read() == data[10:]
    store.copy("a/b/obj.bin", "c/copy.bin")
    assert store.read("c/copy.bin") == data
    store.delete("a/b/obj.bin")
    assert not store.exists("a/b/obj.bin")
    with pytest.raises(ObjectNotFound, match="a/b/obj.bin"):
        store.read("a/b/obj.bin")
    sub = store.sub("c")
    assert sub.read("copy.bin") == data and sub.url("copy.bin") == store.url("c/copy.bin")
    assert open_store(store.uri).read("top.txt") == b"hello" if isinstance(store, LocalStore) else True


def test_paths_cannot_escape_the_root(store: Store) -> None:
    for bad in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(ValueError, match="stay under the root"):
            store.put(bad, b"x")


def test_put_file_and_overwrite_is_atomic(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"1" * 5000)
    store.put_file("f.bin", str(src))
    store.put("f.bin", b"2" * 7000)
    assert store.read("f.bin") == b"2" * 7000
    assert list(store.list("")) == ["f.bin"]  # no temp files visible


def test_local_write_crash_leaves_no_partial_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.put("x.bin", b"data")
    assert list(store.list("")) == [] and not any(tmp_path.iterdir())


def test_s3_multipart_upload_round_trips(s3_endpoint: str, tmp_path: Path) -> None:
    store = make_s3_store(s3_endpoint, multipart_threshold=6 << 20, part_size=5 << 20)
    data = os.urandom(13 << 20)
    store.put("big.bin", data)
    assert store.stats.ops["mpu_part"] == 3 and store.stats.ops["mpu_complete"] == 1
    assert store.read("big.bin") == data
    f = tmp_path / "big2.bin"
    f.write_bytes(data[::-1])
    store.put_file("big2.bin", str(f))
    with store.open("big2.bin") as fh:
        assert fh.read() == data[::-1]


def test_s3_retries_slowdown_then_succeeds(s3_endpoint: str) -> None:
    with FaultProxy(s3_endpoint, fail_first=4) as proxy:
        store = S3Store("throttled", "p", S3Options(endpoint_url=proxy.url, base_delay=0.01, max_delay=0.05))
        store.create_bucket()
        store.put("obj", b"payload")
        assert store.read("obj") == b"payload"
    assert proxy.failed == 4
    assert store.stats.retries == 4


def test_s3_429_is_retried_too(s3_endpoint: str) -> None:
    base = make_s3_store(s3_endpoint)
    base.put("x", b"1")
    with FaultProxy(s3_endpoint, fail_first=2, status=429) as proxy:
        store = S3Store(base.bucket, "lake", S3Options(endpoint_url=proxy.url, base_delay=0.01, max_delay=0.02))
        assert store.read("x") == b"1"
    assert store.stats.retries == 2


def test_s3_gives_up_with_a_message_that_says_what_to_do(s3_endpoint: str) -> None:
    with FaultProxy(s3_endpoint, fail_first=1000) as proxy:
        store = S3Store("b", "p", S3Options(endpoint_url=proxy.url, max_retries=2, base_delay=0.001, max_delay=0.002))
        with pytest.raises(StoreError, match=r"still failing after 3 attempts \(SlowDown\); lower the request rate"):
            store.read("obj")
    assert proxy.failed == 3


def test_s3_unreachable_endpoint_is_a_clear_error() -> None:
    from tests.conftest import free_port

    store = S3Store("b", "", S3Options(endpoint_url=f"http://127.0.0.1:{free_port()}", max_retries=1,
                                       base_delay=0.001, connect_timeout=0.5))
    with pytest.raises(StoreError, match="cannot reach http://127.0.0.1"):
        store.read("x")


def test_s3_listing_paginates(s3_endpoint: str) -> None:
    store = make_s3_store(s3_endpoint)
    for i in range(1005):
        store.put(f"many/{i:05d}", b"")
    before = store.stats.ops["list"]
    assert len(list(store.list("many"))) == 1005
    assert store.stats.ops["list"] - before == 2  # 1000 per page


def test_token_bucket_limits_rate() -> None:
    bucket = TokenBucket(rate=50, burst=5)
    t0 = time.monotonic()
    for _ in range(30):
        bucket.acquire()
    elapsed = time.monotonic() - t0
    assert 0.4 <= elapsed < 2.0  # 25 tokens beyond the burst at 50/s = 0.5 s


def test_token_bucket_is_thread_safe() -> None:
    bucket = TokenBucket(rate=200, burst=1)
    t0 = time.monotonic()
    threads = [threading.Thread(target=lambda: [bucket.acquire() for _ in range(20)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - t0 >= 79 / 200 * 0.9


def test_s3_rate_limit_applies_to_requests(s3_endpoint: str) -> None:
    store = make_s3_store(s3_endpoint, rate_limit=20, burst=1)
    store.put("x", b"1")
    t0 = time.monotonic()
    for _ in range(10):
        store.read_range("x", 0, 1)
    assert time.monotonic() - t0 >= 0.4


def test_open_store_parses_uris(tmp_path: Path) -> None:
    assert isinstance(open_store(tmp_path), LocalStore)
    assert isinstance(open_store(tmp_path.as_uri()), LocalStore)
    s = open_store("s3://bucket/some/prefix", options=S3Options(endpoint_url="http://127.0.0.1:1"))
    assert isinstance(s, S3Store) and s.url("a/b") == "s3://bucket/some/prefix/a/b"
    with pytest.raises(ValueError, match="unsupported store URI"):
        open_store("gs://bucket/x")
