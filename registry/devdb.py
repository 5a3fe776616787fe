"""A throwaway PostgreSQL server for tests and benchmarks (Debian's postgresql package).

``initdb`` refuses to run as root, so as root the cluster is created and run as the
unprivileged ``postgres`` user, in a fresh temp dir, listening on 127.0.0.1 only, with
durability off (fsync, synchronous_commit, full_page_writes): it is for tests, never data.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TempPostgres", "PG_BIN"]

PG_BIN = Path(os.environ.get("MMLAKE_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres(*cmd: str) -> list[str]:
    return list(cmd) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *cmd]


@dataclass
class TempPostgres:
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://mmlake@127.0.0.1:{self.port}"

    @classmethod
    def start(cls) -> TempPostgres:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"PostgreSQL is not installed ({PG_BIN}/initdb missing): `make test` installs it "
                               "(apt-get install postgresql)")
        root = Path(tempfile.mkdtemp(prefix="mmlake-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        data = root / "data"
        subprocess.run(_as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-U", "mmlake", "--auth=trust",
                                    "-E", "UTF8", "--no-sync"), check=True, capture_output=True)
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o",
                                    f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
                                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                                    "-w", "start"), check=True, capture_output=True)
        return cls(root, port)

    def new_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"postgresql://mmlake@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"{self.url}/{name}"

    def stop(self) -> None:
        subprocess.run(_as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w",
                                    "stop"), capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)
