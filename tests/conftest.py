"""Shared fixtures: a real S3-protocol server on 127.0.0.1 (moto_server, spoken to over HTTP
through boto3 -- no in-process patching), a fault-injecting HTTP proxy in front of it, and
small generated corpora."""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from datalake.store import S3Options, S3Store

os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
for var in ("MMLAKE_LAKE", "MMLAKE_S3_ENDPOINT", "MMLAKE_S3_RATE_LIMIT", "MMLAKE_CONFIG", "MMLAKE_REGISTRY"):
    os.environ.pop(var, None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto_server on 127.0.0.1 for the whole session."""
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which("moto_server")
    assert exe, "moto_server not found: install the test extra (make test does)"
    port = free_port()
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"moto_server did not start (see {log.name})") from None
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)
    log.close()


def make_s3_store(endpoint: str, **opts: object) -> S3Store:
    bucket = f"t-{uuid.uuid4().hex[:12]}"
    store = S3Store(bucket, "lake", S3Options(endpoint_url=endpoint, **opts))  # type: ignore[arg-type]
    store.create_bucket()
    return store


@pytest.fixture
def s3_store(s3_endpoint: str) -> S3Store:
    """A store on a fresh bucket of the loopback S3 server."""
    return make_s3_store(s3_endpoint)


class FaultProxy:
    """An HTTP proxy on 127.0.0.1 that answers ``503 SlowDown`` to the first ``fail_first``
    requests (and every ``fail_every``-th after), forwarding the rest to ``upstream``."""

    def __init__(self, upstream: str, fail_first: int = 0, fail_every: int = 0, status: int = 503) -> None:
        self.upstream = upstream.split("://", 1)[1]
        self.fail_first, self.fail_every, self.status = fail_first, fail_every, status
        self.seen = self.failed = 0
        self.times: list[float] = []  # time.monotonic() of each request
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with proxy.lock:
                    proxy.seen += 1
                    proxy.times.append(time.monotonic())
                    n = proxy.seen
                    fail = n <= proxy.fail_first or (proxy.fail_every and n % proxy.fail_every == 0)
                    if fail:
                        proxy.failed += 1
                if fail:
                    code = "SlowDown" if proxy.status == 503 else "TooManyRequests"
                    msg = (f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                           "<Message>Please reduce your request rate.</Message></Error>").encode()
                    self.send_response(proxy.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(msg)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(msg)
                    return
                conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("expect", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # clients closing keep-alive connections: not a test failure

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def caption_folder(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """24 good captioned images plus one of each broken input, in img2dataset layout."""
    from synth.shapes import write_caption_folder

    root = tmp_path / "raw"
    return root, write_caption_folder(root, 24, seed=1, broken=True)


# ---------------------------------------------------------------------------------------------
# PostgreSQL: a real server (Debian's package), initdb'd as the unprivileged postgres user in a
# temp dir, listening on 127.0.0.1 only; a fresh database per test.


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    from registry.devdb import TempPostgres

    pg = TempPostgres.start()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def registry_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same registry tests run on SQLite and on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("pg_server").new_database()  # type: ignore[no-any-return]
