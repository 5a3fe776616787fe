"""Durable jobs: a registry killed mid-job takes the job up again after a restart, a job whose
worker is gone for good fails visibly, cancel stops a running job, retry makes a new run, a job
runs with its submitter's role, and every job's log is stored and served."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from registry.api import ApiSettings, create_app
from registry.models import Job
from registry.service import Registry
from registry.worker import JobQueue, log_path
from synth.shapes import write_caption_folder
from tests.conftest import free_port

from .conftest import World


def _wait(pred, timeout: float = 60.0, what: str = "condition", poll: float = 0.1):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _serve(url: str, lake: Path, home: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MMLAKE_REGISTRY": url, "MMLAKE_HOME": str(home), "MMLAKE_LAKE": str(lake)}
    p = subprocess.Popen([sys.executable, "-m", "mmlake.cli", "registry", "serve", "--port", str(port),
                          "--job-lease", "3", *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up() -> bool:
        if p.poll() is not None:
            raise AssertionError(f"registry exited: {p.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    _wait(up, 60, "the registry to serve")
    return p


def _child_pid(store_root: Path, run_id: str, attempt: int) -> int:
    def pid() -> int | None:
        f = store_root / log_path(run_id)
        if not f.exists():
            return None
        lines = [ln for ln in f.read_text().splitlines() if "] job process " in ln and ln.endswith(" started")]
        return int(lines[attempt - 1].split("] job process ")[1].split()[0]) if len(lines) >= attempt else None

    return _wait(pid, 60, f"attempt {attempt}'s job process", poll=0.02)  # type: ignore[no-any-return]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_registry_killed_mid_job_finishes_it_after_a_restart(registry_url: str, tmp_path: Path) -> None:
    reg = Registry(registry_url)
    token = reg.create_user("wanda", "writer")
    lake, home, raw = tmp_path / "lake", tmp_path / "home", tmp_path / "home" / "raw"
    write_caption_folder(raw, 40, seed=5)
    port = free_port()
    server = _serve(registry_url, lake, home, port)
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}/api/v1", headers={"Authorization": f"Bearer {token}"})
    try:
        r = api.post("/jobs", json={"type": "ingest", "source": str(raw), "dataset": "durable"})
        assert r.status_code == 202, r.text
        rid = r.json()["id"]
        child = _child_pid(lake, rid, 1)
        os.kill(child, signal.SIGSTOP)  # the job cannot finish before its registry dies
        assert api.get(f"/jobs/{rid}").json()["state"] == "running"
        server.send_signal(signal.SIGKILL)
        server.wait(10)
        _wait(lambda: not _alive(child), 10, "the job's process to die with its registry")
        with reg.session(read=True) as s:  # what a restart must not leave behind
            assert s.get(Job, rid).state == "running"
        server = _serve(registry_url, lake, home, port)
        _wait(lambda: api.get(f"/jobs/{rid}").json()["state"] in ("succeeded", "failed"), 90, "the job")
        done = reg.get_run(rid)
        assert done.status == "succeeded", done.error
        assert done.outputs == ["durable@1"] and done.counts["ingested"] == 40
        job = api.get(f"/jobs/{rid}").json()
        assert job["state"] == "succeeded" and job["attempts"] == 2 and job["lease_owner"] is None
        log = api.get(f"/runs/{rid}/logs").text
        assert "attempt 1 of 2" in log and "attempt 2 of 2" in log and "ingested 40" in log
        assert done.logs_uri and done.logs_uri.endswith(log_path(rid))
        assert not reg.list_runs(status="running") and not reg.list_runs(status="queued")
        audit = reg.audit(action="job.")
        assert [e["action"] for e in audit][-2:] == ["job.recover", "job.submit"]  # newest first
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
        api.close()
        reg.close()


def test_a_job_whose_worker_is_gone_fails_visibly_once_attempts_are_used(world: World) -> None:
    app = create_app(world.reg, ApiSettings(lake_uri=world.lake.uri, job_workers=0, job_max_attempts=1))
    client = TestClient(app)
    w = {"Authorization": f"Bearer {world.tokens['writer']}"}
    rid = client.post("/api/v1/jobs", json={"type": "ingest", "source": world.raw, "dataset": "lost"}, headers=w).json()["id"]
    q = JobQueue(world.reg)
    assert q.claim("elsewhere:1:x", lease_s=30).run_id == rid  # a worker on another host takes it ...
    assert q.recover() == []  # ... and while its lease runs nobody else may
    assert q.recover(now=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=31)) == [(rid, "failed")]
    run = world.reg.get_run(rid)
    assert run.status == "failed" and "stopped (lease ran out) during attempt 1 of 1" in (run.error or "")
    # retry: a new run with the same spec, which a worker then runs
    again = client.post(f"/api/v1/jobs/{rid}/retry", headers=w)
    assert again.status_code == 202, again.text
    new = again.json()
    assert new["id"] != rid and new["parameters"]["retry_of"] == rid and new["status"] == "queued"
    app.state.jobs.run_jobs = True
    app.state.jobs.start()
    app.state.jobs.wait()
    assert world.reg.get_run(new["id"]).status == "succeeded"
    assert client.post(f"/api/v1/jobs/{new['id']}/cancel", headers=w).status_code == 409  # finished


def test_cancel_stops_a_running_job_and_only_its_submitter_or_an_admin_may(world: World) -> None:
    world.reg.create_user("other-writer", "writer")
    from registry.auth import create_token

    other, _ = create_token(world.reg, "other-writer")
    app = create_app(world.reg, ApiSettings(lake_uri=world.lake.uri, job_lease_s=1.5))
    client = TestClient(app)
    w = {"Authorization": f"Bearer {world.tokens['writer']}"}
    rid = client.post("/api/v1/jobs", json={"type": "ingest", "source": world.raw, "dataset": "stopped"},
                      headers=w).json()["id"]
    child = _child_pid(world.tmp / "lake", rid, 1)
    os.kill(child, signal.SIGSTOP)  # a job that would run for ever
    r = client.post(f"/api/v1/jobs/{rid}/cancel", headers={"Authorization": f"Bearer {other}"})
    assert r.status_code == 403 and "only its submitter or an admin" in r.text
    r = client.post(f"/api/v1/jobs/{rid}/cancel", headers=w)
    assert r.status_code == 200 and r.json()["cancel_requested"] is True
    app.state.jobs.wait(60)
    assert world.reg.get_run(rid).status == "cancelled" and not _alive(child)
    assert client.get(f"/api/v1/jobs/{rid}").json()["state"] == "cancelled"
    assert "cancelled" in client.get(f"/api/v1/runs/{rid}/logs").text
    # a queued job is cancelled before it starts: nothing is written
    app2 = create_app(world.reg, ApiSettings(lake_uri=world.lake.uri, job_workers=0))
    c2 = TestClient(app2)
    q = c2.post("/api/v1/jobs", json={"type": "ingest", "source": world.raw, "dataset": "never"}, headers=w).json()["id"]
    assert c2.post(f"/api/v1/jobs/{q}/cancel", headers=w).json()["state"] == "cancelled"
    assert world.reg.get_run(q).status == "cancelled" and "never" not in [d.name for d in world.reg.list_datasets()]


def test_a_job_runs_with_its_submitters_role_when_it_starts(world: World) -> None:
    app = create_app(world.reg, ApiSettings(lake_uri=world.lake.uri, job_workers=0))
    client = TestClient(app)
    world.reg.create_user("temp", "writer")
    from registry.auth import create_token

    tok, _ = create_token(world.reg, "temp")
    rid = client.post("/api/v1/jobs", json={"type": "ingest", "source": world.raw, "dataset": "demoted"},
                      headers={"Authorization": f"Bearer {tok}"}).json()["id"]
    from registry.models import User

    with world.reg.session() as s:  # an admin demotes the submitter before the job starts
        s.query(User).filter(User.name == "temp").one().role = "reader"
    app.state.jobs.run_jobs = True
    app.state.jobs.start()
    app.state.jobs.wait()
    run = world.reg.get_run(rid)
    assert run.status == "failed" and "submitter temp, who is now a reader" in (run.error or "")
    assert "demoted" not in [d.name for d in world.reg.list_datasets()]
    with world.reg.session(read=True) as s:
        assert s.get(Job, rid).state == "failed"


@pytest.mark.parametrize("registry_url", ["sqlite"], indirect=True)
def test_jobs_cli_lists_shows_and_prints_logs(world: World) -> None:
    from click.testing import CliRunner

    from mmlake.cli import main

    app = create_app(world.reg, ApiSettings(lake_uri=world.lake.uri))
    client = TestClient(app)
    rid = client.post("/api/v1/jobs", json={"type": "ingest", "source": world.raw, "dataset": "cli-job"},
                      headers={"Authorization": f"Bearer {world.tokens['writer']}"}).json()["id"]
    app.state.jobs.wait()
    env = {"MMLAKE_REGISTRY": world.reg.url, "MMLAKE_LAKE": world.lake.uri}
    out = CliRunner().invoke(main, ["jobs", "list", "--json"], env=env)
    assert out.exit_code == 0, out.output
    import json

    rows = json.loads(out.output)
    assert [j["run_id"] for j in rows] == [rid] and rows[0]["state"] == "succeeded"
    shown = CliRunner().invoke(main, ["jobs", "show", rid], env=env)
    assert "succeeded" in shown.output and "cli-job@1" in shown.output
    logs = CliRunner().invoke(main, ["jobs", "logs", rid], env=env)
    assert "attempt 1 of 2" in logs.output and "exited with code 0" in logs.output
