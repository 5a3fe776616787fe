"""Object store on S3 or any S3-protocol server (MinIO, Ceph, moto_server), through boto3.

Every request goes through one place (``_call``), which
- waits for a token from an optional client-side rate limit (requests/s, token bucket);
- retries throttling (503 SlowDown, 429), 5xx and connection errors with exponential
  backoff and full jitter (``delay = uniform(0, min(max_delay, base * 2**attempt))``);
- counts the request in ``stats``.
botocore's own retries are switched off so the count and the limit are exact.

Large uploads are multipart (``multipart_threshold``, ``part_size``), with each part retried
on its own and the upload aborted on failure; an object becomes visible only when the upload
completes, so a crash never leaves a half object. ``open`` returns a buffered reader made of
ranged GETs (``read_chunk`` bytes each), so a long sequential read survives a dropped
connection without starting over.
"""

from __future__ import annotations

import io
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, TypeVar

from datalake.store.base import ObjectNotFound, StoreError, StoreStats, clean_path
from datalake.store.ratelimit import NodeTokenBucket, TokenBucket

__all__ = ["S3Store", "S3Options"]

T = TypeVar("T")

_RETRY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
                "RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable"}
_MiB = 1 << 20


class S3Options:
    """Tuning for an ``S3Store``; defaults suit AWS S3 and MinIO."""

    def __init__(self, *, endpoint_url: str | None = None, region: str | None = None,
                 rate_limit: float | None = None, burst: float | None = None, rate_file: str | None = None,
                 max_retries: int = 8,
                 base_delay: float = 0.05, max_delay: float = 5.0, multipart_threshold: int = 64 * _MiB,
                 part_size: int = 16 * _MiB, upload_threads: int = 4, read_chunk: int = 8 * _MiB,
                 connect_timeout: float = 5.0, read_timeout: float = 60.0) -> None:
        if part_size < 5 * _MiB:
            raise ValueError(f"S3 multipart parts must be >= 5 MiB, got part_size={part_size}")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        self.endpoint_url, self.region = endpoint_url, region
        self.rate_limit, self.burst, self.max_retries = rate_limit, burst, max_retries
        #: where the rate limit's bucket lives: None, this process; a path, every process using it
        self.rate_file = rate_file
        self.base_delay, self.max_delay = base_delay, max_delay
        self.multipart_threshold, self.part_size = multipart_threshold, part_size
        self.upload_threads, self.read_chunk = upload_threads, read_chunk
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout


class _Shared:
    """What sub-stores share with their parent: client, limiter, counters, options."""

    def __init__(self, opts: S3Options, client: Any | None, stats: StoreStats | None) -> None:
        self.opts = opts
        self.stats = stats or StoreStats()
        self.limiter: TokenBucket | NodeTokenBucket | None = None
        if opts.rate_limit:
            self.limiter = (NodeTokenBucket(opts.rate_file, opts.rate_limit, opts.burst) if opts.rate_file
                            else TokenBucket(opts.rate_limit, opts.burst))
        self.jitter = random.Random()  # timing only; never touches data order
        self.lock = threading.Lock()
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.session.Session().client(
                "s3", endpoint_url=opts.endpoint_url, region_name=opts.region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=32,
                              connect_timeout=opts.connect_timeout, read_timeout=opts.read_timeout,
                              s3={"addressing_style": "path"} if opts.endpoint_url else None,
                              request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"))
        self.client = client


class S3Store:
    def __init__(self, bucket: str, prefix: str = "", options: S3Options | None = None, *,
                 client: Any | None = None, _shared: _Shared | None = None) -> None:
        if not bucket:
            raise ValueError("an S3 store needs a bucket: s3://BUCKET/prefix")
        self.bucket = bucket
        self.prefix = clean_path(prefix.strip("/"))
        self._s = _shared or _Shared(options or S3Options(), client, None)
        self.stats = self._s.stats
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")

    def __repr__(self) -> str:
        return f"S3Store({self.uri!r}, endpoint={self._s.opts.endpoint_url!r})"

    @property
    def client(self) -> Any:
        return self._s.client

    def _k(self, path: str) -> str:
        rel = clean_path(path)
        return f"{self.prefix}/{rel}" if self.prefix and rel else (self.prefix or rel)

    def url(self, path: str) -> str:
        return f"s3://{self.bucket}/{self._k(path)}"

    def sub(self, prefix: str) -> S3Store:
        return S3Store(self.bucket, self._k(prefix), _shared=self._s)

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (for tests and first-time set-up)."""
        from botocore.exceptions import ClientError

        try:
            self._call("head_bucket", self.client.head_bucket, Bucket=self.bucket)
        except (ClientError, ObjectNotFound):
            self._call("create_bucket", self.client.create_bucket, Bucket=self.bucket)

    # -- the one request path ---------------------------------------------------------------
    def _call(self, op: str, fn: Callable[..., T], *, _read: Callable[[Any], Any] | None = None, **kw: Any) -> T:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            HTTPClientError,
        )
        from botocore.exceptions import (
            ConnectionError as BotoConnectionError,
        )

        opts = self._s.opts
        attempt = 0
        while True:
            if self._s.limiter is not None:
                self._s.limiter.acquire()
            self.stats.count(op)
            try:
                result = fn(**kw)
                return _read(result) if _read else result
            except ClientError as exc:
                err = exc.response.get("Error", {})
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                code = str(err.get("Code", ""))
                retryable = status in (429, 500, 502, 503, 504) or code in _RETRY_CODES
                if not retryable or attempt >= opts.max_retries:
                    if status == 404 or code in ("NoSuchKey", "404", "NotFound"):
                        raise ObjectNotFound(f"no object at s3://{self.bucket}/{kw.get('Key', '')}") from None
                    if retryable:
                        raise StoreError(f"{op} s3://{self.bucket}/{kw.get('Key', '')} still failing after "
                                         f"{attempt + 1} attempts ({code or status}); lower the request rate "
                                         f"(MMLAKE_S3_RATE_LIMIT) or retry later") from exc
                    raise
            except (BotoConnectionError, HTTPClientError, BotoCoreError, ConnectionError, OSError) as exc:
                if attempt >= opts.max_retries:
                    raise StoreError(f"{op} s3://{self.bucket}/{kw.get('Key', '')}: cannot reach "
                                     f"{opts.endpoint_url or 'S3'} after {attempt + 1} attempts: {exc}") from exc
            self.stats.count_retry()
            with self._s.lock:
                delay = self._s.jitter.uniform(0, min(opts.max_delay, opts.base_delay * 2 ** attempt))
            time.sleep(delay)
            attempt += 1

    # -- reads ------------------------------------------------------------------------------
    def read(self, path: str) -> bytes:
        data: bytes = self._call("get", self.client.get_object, Bucket=self.bucket, Key=self._k(path),
                                 _read=lambda r: r["Body"].read())
        self.stats.add(read=len(data))
        return data

    def read_range(self, path: str, start: int, length: int) -> bytes:
        if start < 0 or length < 0:
            raise ValueError(f"bad range start={start} length={length}")
        if length == 0:
            return b""
        data: bytes = self._call("get_range", self.client.get_object, Bucket=self.bucket, Key=self._k(path),
                                 Range=f"bytes={start}-{start + length - 1}", _read=lambda r: r["Body"].read())
        self.stats.add(read=len(data))
        return data

    def size(self, path: str) -> int:
        head = self._call("head", self.client.head_object, Bucket=self.bucket, Key=self._k(path))
        return int(head["ContentLength"])

    def exists(self, path: str) -> bool:
        try:
            self.size(path)
            return True
        except ObjectNotFound:
            return False

    def open(self, path: str) -> BinaryIO:
        raw = _RangedReader(self, path, self.size(path))
        return io.BufferedReader(raw, buffer_size=self._s.opts.read_chunk)  # type: ignore[return-value]

    def list(self, prefix: str = "") -> Iterator[str]:
        base = self._k(prefix)
        root = f"{self.prefix}/" if self.prefix else ""
        kw: dict[str, Any] = {"Bucket": self.bucket, "Prefix": base}
        found: list[str] = []
        while True:
            page = self._call("list", self.client.list_objects_v2, **kw)
            for obj in page.get("Contents", []):
                key: str = obj["Key"]
                rel = key[len(root):]
                # a prefix "a/b" must not match "a/bc/..."; an exact key match is allowed
                if base and key != base and not key.startswith(base.rstrip("/") + "/"):
                    continue
                found.append(rel)
            if not page.get("IsTruncated"):
                break
            kw["ContinuationToken"] = page["NextContinuationToken"]
        yield from sorted(found)

    # -- writes -----------------------------------------------------------------------------
    def put(self, path: str, data: bytes) -> None:
        if len(data) >= self._s.opts.multipart_threshold:
            self._multipart(path, io.BytesIO(data), len(data))
            return
        self._call("put", self.client.put_object, Bucket=self.bucket, Key=self._k(path), Body=data)
        self.stats.add(written=len(data))

    def put_file(self, path: str, local_path: str | os.PathLike[str]) -> None:
        size = os.path.getsize(local_path)
        if size >= self._s.opts.multipart_threshold:
            with open(local_path, "rb") as f:
                self._multipart(path, f, size)
            return
        with open(local_path, "rb") as f:
            self.put(path, f.read())

    def _multipart(self, path: str, f: BinaryIO, size: int) -> None:
        key, ps = self._k(path), self._s.opts.part_size
        up = self._call("mpu_create", self.client.create_multipart_upload, Bucket=self.bucket, Key=key)
        upload_id = up["UploadId"]
        lock = threading.Lock()

        def part(n: int) -> dict[str, Any]:
            with lock:
                f.seek((n - 1) * ps)
                body = f.read(ps)
            r = self._call("mpu_part", self.client.upload_part, Bucket=self.bucket, Key=key,
                           UploadId=upload_id, PartNumber=n, Body=body)
            self.stats.add(written=len(body))
            return {"PartNumber": n, "ETag": r["ETag"]}

        n_parts = max(1, -(-size // ps))
        try:
            with ThreadPoolExecutor(max_workers=self._s.opts.upload_threads) as pool:
                parts = list(pool.map(part, range(1, n_parts + 1)))
            self._call("mpu_complete", self.client.complete_multipart_upload, Bucket=self.bucket, Key=key,
                       UploadId=upload_id, MultipartUpload={"Parts": parts})
        except BaseException:
            try:
                self._call("mpu_abort", self.client.abort_multipart_upload, Bucket=self.bucket, Key=key,
                           UploadId=upload_id)
            finally:
                raise

    def delete(self, path: str) -> None:
        self._call("delete", self.client.delete_object, Bucket=self.bucket, Key=self._k(path))

    def copy(self, src: str, dst: str) -> None:
        size = self.size(src)
        if size < 5 * 1024 * _MiB:
            self._call("copy", self.client.copy_object, Bucket=self.bucket, Key=self._k(dst),
                       CopySource={"Bucket": self.bucket, "Key": self._k(src)})
            return
        key, ps = self._k(dst), max(self._s.opts.part_size, 512 * _MiB)
        up = self._call("mpu_create", self.client.create_multipart_upload, Bucket=self.bucket, Key=key)
        parts = []
        try:
            for n, start in enumerate(range(0, size, ps), start=1):
                r = self._call("mpu_part_copy", self.client.upload_part_copy, Bucket=self.bucket, Key=key,
                               UploadId=up["UploadId"], PartNumber=n,
                               CopySource={"Bucket": self.bucket, "Key": self._k(src)},
                               CopySourceRange=f"bytes={start}-{min(size, start + ps) - 1}")
                parts.append({"PartNumber": n, "ETag": r["CopyPartResult"]["ETag"]})
            self._call("mpu_complete", self.client.complete_multipart_upload, Bucket=self.bucket, Key=key,
                       UploadId=up["UploadId"], MultipartUpload={"Parts": parts})
        except BaseException:
            self._call("mpu_abort", self.client.abort_multipart_upload, Bucket=self.bucket, Key=key,
                       UploadId=up["UploadId"])
            raise


class _RangedReader(io.RawIOBase):
    """Sequential reads of one object as ranged GETs, each retried on its own."""

    def __init__(self, store: S3Store, path: str, size: int) -> None:
        self.store, self.path, self.length, self.pos = store, path, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.length}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buf: Any) -> int:
        n = min(len(buf), self.length - self.pos)
        if n <= 0:
            return 0
        data = self.store.read_range(self.path, self.pos, n)
        buf[: len(data)] = data
        self.pos += len(data)
        return len(data)
