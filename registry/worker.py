"""Durable jobs: a queue in the registry database and the worker loop that runs it.

A submitted job is two rows written in one transaction: its run (``queued``) and a ``jobs`` row
with the spec and what the job may touch (lake, roots). A worker loop claims the oldest queued
job -- ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several workers never take the
same one; SQLite serialises writers and runs one worker -- and owns it while its lease is
renewed by heartbeats. The job itself runs in a child process (``python -m registry.worker
exec``) that dies with the worker thread that started it (``PR_SET_PDEATHSIG``); its output is
the run's log, stored in the lake (``logs/runs/<run id>.log``) while it runs.

What a restart does: a running job whose lease ran out, or whose worker process on this host is
gone, is queued again (a pipeline resumes from the tasks it finished: its write id is the same)
until ``max_attempts`` is used up; then its run fails with a message that says so. Nothing stays
``running`` after its worker is gone.

Cancel: a queued job is cancelled at once; a running one is flagged and its worker stops the
child within a heartbeat. Retry: a finished job is submitted again as a new run (``retry_of``).
A job runs with its submitter's role as it is when the job starts: a submitter who is no longer
a writer gets a failed run, not a job done on their behalf.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from registry.models import Job, Run, User, utcnow
from registry.types import Conflict, Forbidden, NotFound, RegistryError, RunInfo

__all__ = ["JobQueue", "JobWorker", "JobView", "LOG_LIMIT", "log_path", "read_log"]

LOG_LIMIT = 1 << 20  #: bytes of a run's log kept (the end)
TERMINAL = ("succeeded", "failed", "cancelled")


def log_path(run_id: str) -> str:
    return f"logs/runs/{run_id}.log"


def read_log(reg: Any, run_id: str, tail: int = LOG_LIMIT) -> str:
    """The end of a job's log as the registry stored it in its lake. Logs of runs recorded by
    other clients (their own ``logs_uri``) are not read: they may point anywhere."""
    from datalake import Lake

    reg.get_run(run_id)  # 404 for an unknown run
    with reg.session(read=True) as s:
        j = s.get(Job, run_id)
        lake = None if j is None else (j.config or {}).get("lake")
    if not lake:
        raise NotFound(f"run {run_id} was not run by this registry's jobs: it has no stored log")
    try:
        data = Lake.open(lake).store.read(log_path(run_id))
    except Exception:  # noqa: BLE001 - queued, or its worker has not written yet
        return ""
    return data[-tail:].decode(errors="replace")


def _aware(t: dt.datetime | None) -> dt.datetime | None:
    return None if t is None else (t if t.tzinfo else t.replace(tzinfo=dt.UTC))


def _iso(t: dt.datetime | None) -> str | None:
    t = _aware(t)
    return None if t is None else t.isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class JobView:
    run_id: str
    state: str
    spec: dict[str, Any]
    config: dict[str, Any]
    submitted_by: str | None
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_until: str | None
    heartbeat_at: str | None
    cancel_requested: bool
    created_at: str | None

    @classmethod
    def of(cls, j: Job) -> JobView:
        return cls(j.run_id, j.state, dict(j.spec or {}), dict(j.config or {}), j.submitted_by, j.attempts,
                   j.max_attempts, j.lease_owner, _iso(j.lease_until), _iso(j.heartbeat_at), bool(j.cancel_requested),
                   _iso(j.created_at))

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _owner_alive(owner: str | None) -> bool:
    """Whether the worker process named by ``owner`` (host:pid:nonce) may still be alive. Only
    processes on this host can be checked; others count as alive until their lease runs out."""
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobQueue:
    """The jobs table of a ``Registry``: enqueue, claim, heartbeat, settle, recover, cancel."""

    def __init__(self, reg: Any) -> None:
        self.reg = reg

    # -- writers' side -----------------------------------------------------------------------

    def enqueue(self, kind: str, name: str, *, job_spec: dict[str, Any], config: dict[str, Any],
                submitted_by: str | None, run_spec: dict[str, Any] | None = None, inputs: tuple[str, ...] = (),
                parameters: dict[str, Any] | None = None, max_attempts: int = 2) -> RunInfo:
        """The queued run and its job row, in one transaction."""
        reg = self.reg
        with reg.session() as s:
            r = reg._new_run(s, str(uuid.uuid4()), kind, name, inputs, run_spec, parameters, None, "queued",
                             submitted_by, None)
            s.add(Job(run_id=r.id, spec=job_spec, config=config, submitted_by=submitted_by, state="queued",
                      attempts=0, max_attempts=max_attempts, cancel_requested=False))
            reg._audit(s, submitted_by, "job.submit", r.id, name=name, type=job_spec.get("type"),
                       retry_of=(parameters or {}).get("retry_of"))
            s.flush()
            return reg._run_info(s, r)  # type: ignore[no-any-return]

    def get(self, run_id: str) -> JobView:
        with self.reg.session(read=True) as s:
            j = s.get(Job, run_id)
            if j is None:
                raise NotFound(f"run {run_id!r} is not a submitted job")
            return JobView.of(j)

    def list(self, *, state: str | None = None, offset: int = 0, limit: int = 100) -> list[JobView]:
        with self.reg.session(read=True) as s:
            stmt = select(Job).order_by(Job.created_at.desc(), Job.run_id).offset(offset).limit(limit)
            if state:
                stmt = stmt.where(Job.state == state)
            return [JobView.of(j) for j in s.scalars(stmt).all()]

    def cancel(self, run_id: str, actor: str | None, role: str | None) -> JobView:
        """Cancel a queued job now, or ask the worker of a running one to stop it."""
        with self.reg.session() as s:
            j = s.get(Job, run_id, with_for_update=True)
            if j is None:
                raise NotFound(f"run {run_id!r} is not a submitted job")
            _may_change(j, actor, role, "cancel")
            if j.state in TERMINAL:
                raise Conflict(f"job {run_id} already finished ({j.state}); nothing to cancel")
            if j.state == "queued":
                j.state = "cancelled"
                self._finish(s, run_id, "cancelled", f"cancelled by {actor or 'anonymous'} before it started")
            else:
                j.cancel_requested = True
            self.reg._audit(s, actor, "job.cancel", run_id, state=j.state)
            s.flush()
            return JobView.of(j)

    def retry(self, run_id: str, actor: str | None, role: str | None) -> RunInfo:
        """Queue a finished job's spec again as a new run, with the same inputs and limits."""
        j = self.finished_job(run_id, actor, role)
        old = self.reg.get_run(run_id)
        params = {k: v for k, v in old.parameters.items() if k not in ("retry_of", "write_id")}
        return self.enqueue(old.kind, old.name, job_spec=j.spec, config=j.config,
                            submitted_by=actor if actor is not None else j.submitted_by, run_spec=old.spec,
                            inputs=tuple(old.inputs), parameters={**params, "retry_of": run_id},
                            max_attempts=j.max_attempts)

    def finished_job(self, run_id: str, actor: str | None, role: str | None) -> JobView:
        """The job to retry: it must have finished (failed or cancelled, or succeeded)."""
        j = self.get(run_id)
        if j.state not in TERMINAL:
            raise Conflict(f"job {run_id} is {j.state}; cancel it first, or wait for it to finish")
        if not (role == "admin" or actor == j.submitted_by or j.submitted_by is None):
            raise Forbidden(f"{actor} may not retry a job submitted by {j.submitted_by} (only its submitter or an admin)")
        return j

    # -- workers' side -----------------------------------------------------------------------

    def claim(self, owner: str, lease_s: float) -> JobView | None:
        """Take the oldest queued job (skipping rows other workers hold), or None."""
        with self.reg.session() as s:
            j = s.scalar(select(Job).where(Job.state == "queued").order_by(Job.created_at, Job.run_id).limit(1)
                         .with_for_update(skip_locked=True))
            if j is None:
                return None
            now = utcnow()
            j.state, j.attempts = "running", j.attempts + 1
            j.lease_owner, j.lease_until, j.heartbeat_at = owner, now + dt.timedelta(seconds=lease_s), now
            s.flush()
            return JobView.of(j)

    def heartbeat(self, run_id: str, owner: str, lease_s: float) -> tuple[bool, bool]:
        """Renew the lease; (still ours, cancel requested)."""
        with self.reg.session() as s:
            j = s.get(Job, run_id, with_for_update=True)
            if j is None or j.state != "running" or j.lease_owner != owner:
                return False, False
            now = utcnow()
            j.lease_until, j.heartbeat_at = now + dt.timedelta(seconds=lease_s), now
            return True, bool(j.cancel_requested)

    def settle(self, run_id: str, owner: str, rc: int | None, *, cancelled: bool = False,
               error: str | None = None) -> str | None:
        """After the child exits: the job takes its run's final status; a run the child left
        open fails with ``error``. Returns the job's state (None if the lease was lost)."""
        with self.reg.session() as s:
            j = s.get(Job, run_id, with_for_update=True)
            if j is None or j.lease_owner != owner or j.state != "running":
                return None
            r = s.get(Run, run_id)
            if cancelled:
                j.state = "cancelled"
                if r is not None and r.status not in TERMINAL:
                    self._finish(s, run_id, "cancelled", "cancelled while running")
            elif r is not None and r.status in TERMINAL:
                j.state = r.status
            else:
                j.state = "failed"
                self._finish(s, run_id, "failed", error or f"the job's process exited with code {rc}")
            j.lease_owner = j.lease_until = None
            return j.state

    def recover(self, now: dt.datetime | None = None) -> list[tuple[str, str]]:
        """Jobs whose worker is gone (lease run out, or its process on this host dead): queued
        again while attempts remain, else failed (or cancelled, if that was asked). Returns
        (run id, new state) for each."""
        now = now or utcnow()
        out = []
        with self.reg.session() as s:
            for j in s.scalars(select(Job).where(Job.state == "running").with_for_update(skip_locked=True)).all():
                lease = _aware(j.lease_until)
                if lease is not None and lease > now and _owner_alive(j.lease_owner):
                    continue
                gone = f"its worker {j.lease_owner} stopped (lease {'ran out' if lease and lease <= now else 'abandoned'})"
                if j.cancel_requested:
                    j.state = "cancelled"
                    self._finish(s, j.run_id, "cancelled", f"cancelled; {gone}")
                elif j.attempts < j.max_attempts:
                    j.state = "queued"
                    r = s.get(Run, j.run_id)
                    if r is not None and r.status not in TERMINAL:
                        r.status = "queued"
                else:
                    j.state = "failed"
                    self._finish(s, j.run_id, "failed", f"{gone} during attempt {j.attempts} of {j.max_attempts}; "
                                                        "retry it (mmlake jobs retry) once the cause is fixed")
                j.lease_owner = j.lease_until = None
                self.reg._audit(s, None, "job.recover", j.run_id, state=j.state, attempts=j.attempts, reason=gone)
                out.append((j.run_id, j.state))
        for rid, state in out:
            if state != "queued":
                self.reg.emitter.emit("ABORT" if state == "cancelled" else "FAIL", self.reg.get_run(rid), self.reg)
        return out

    def submitter_role(self, name: str | None) -> str | None:
        if name is None:
            return "admin"  # an embedded registry without users: the local user
        with self.reg.session(read=True) as s:
            u = s.scalar(select(User).where(User.name == name))
            return None if u is None else u.role

    def fail(self, run_id: str, owner: str, error: str) -> None:
        with self.reg.session() as s:
            j = s.get(Job, run_id, with_for_update=True)
            if j is None or j.lease_owner != owner:
                return
            j.state, j.lease_owner, j.lease_until = "failed", None, None
            self._finish(s, run_id, "failed", error)

    def _finish(self, s: Any, run_id: str, status: str, error: str) -> None:
        r = s.get(Run, run_id)
        if r is None or r.status in TERMINAL:
            return
        r.status, r.ended_at, r.error = status, utcnow(), error
        if r.started_at is None:
            r.started_at = r.ended_at


def _may_change(j: Job, actor: str | None, role: str | None, what: str) -> None:
    if role == "admin" or j.submitted_by is None or actor == j.submitted_by:
        return
    raise Forbidden(f"{actor} may not {what} a job submitted by {j.submitted_by} (only its submitter or an admin)")


class JobWorker:
    """Claims jobs and runs each in a child process, ``slots`` at a time.

    ``persistent`` workers (``mmlake registry serve`` / ``mmlake registry worker``) poll for
    ever; others (an app made in a test or a script) stop after ``idle_exit_s`` without work and
    start again on the next submit."""

    def __init__(self, reg: Any, *, slots: int = 1, lease_s: float = 30.0, poll_s: float = 0.5,
                 persistent: bool = False, idle_exit_s: float = 3.0) -> None:
        if reg.url.startswith("sqlite") and slots > 1:
            slots = 1  # SQLite has one writer at a time: one job at a time
        self.reg, self.queue = reg, JobQueue(reg)
        self.slots, self.lease_s, self.poll_s = slots, lease_s, poll_s
        self.persistent, self.idle_exit_s = persistent, idle_exit_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._kicks = 0
        self._active: dict[str, threading.Thread] = {}

    def start(self) -> None:
        with self._lock:
            self._kicks += 1
            self._wake.set()
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(target=self._loop, name="mmlake-jobs", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        t = self._thread
        if t is not None:
            t.join(timeout)

    def busy(self) -> bool:
        return any(t.is_alive() for t in list(self._active.values()))

    def _loop(self) -> None:
        idle_since, last_error = time.monotonic(), ""
        while not self._stop.is_set():
            kicks = self._kicks
            try:
                self.queue.recover()
                self._active = {k: t for k, t in self._active.items() if t.is_alive()}
                while len(self._active) < self.slots and not self._stop.is_set():
                    job = self.queue.claim(self.owner, self.lease_s)
                    if job is None:
                        break
                    t = threading.Thread(target=self._execute, args=(job,), name=f"mmlake-job-{job.run_id[:8]}",
                                         daemon=True)
                    self._active[job.run_id] = t
                    t.start()
            except Exception as exc:  # noqa: BLE001 - the database is away
                if self._stop.is_set() or not self.persistent:
                    break  # a transient worker ends; the next submit starts another
                if str(exc) != last_error:  # a persistent one says so once and keeps polling
                    traceback.print_exc()
                    last_error = str(exc)
            if self._active:
                idle_since = time.monotonic()
            elif not self.persistent and time.monotonic() - idle_since > self.idle_exit_s:
                with self._lock:
                    if self._kicks == kicks:  # nothing was submitted since this round looked
                        self._thread = None
                        return
            self._wake.wait(self.poll_s)
            self._wake.clear()
        with self._lock:
            self._thread = None

    # -- one job -----------------------------------------------------------------------------

    def _execute(self, job: JobView) -> None:
        q, rid = self.queue, job.run_id
        role = q.submitter_role(job.submitted_by)
        from registry.auth import role_allows

        if not role_allows(role, "writer"):
            q.fail(rid, self.owner, f"the job runs as its submitter {job.submitted_by}, who is "
                                    f"{'no longer a user' if role is None else 'now a ' + role}; jobs need the writer role")
            return
        log = _RunLog(job)
        log.line(f"attempt {job.attempts} of {job.max_attempts} on {self.owner} as {job.submitted_by or 'local user'}")
        self._set_logs_uri(rid, log.uri)
        env = {**os.environ, "MMLAKE_JOB_DB": self.reg.url, "MMLAKE_JOB_RUN": rid, "PYTHONUNBUFFERED": "1",
               "MMLAKE_JOB_PARENT": str(os.getpid())}
        if self.reg.lineage_target:
            env["MMLAKE_JOB_LINEAGE"] = self.reg.lineage_target
        cancelled = lost = False
        with open(log.local, "ab") as out:
            p = subprocess.Popen([sys.executable, "-m", "registry.worker", "exec"], stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env, preexec_fn=_PDEATHSIG)
            log.line(f"job process {p.pid} started")
            log.upload()
            beat = max(0.2, self.lease_s / 3)
            while True:
                try:
                    rc = p.wait(timeout=beat)
                    break
                except subprocess.TimeoutExpired:
                    pass
                try:
                    ours, cancel = q.heartbeat(rid, self.owner, self.lease_s)
                except Exception:  # noqa: BLE001 - the database is away: keep going, the lease says who owns it
                    ours, cancel = True, False
                if not ours or cancel:
                    cancelled, lost = cancel, not ours
                    _stop(p)
                    rc = p.returncode
                    break
                log.upload()
        if lost:
            log.line("lease lost: another worker owns this job now; stopped")
            log.upload()
            return
        error = None
        if rc != 0 and not cancelled:
            error = f"the job's process exited with code {rc}: {log.last_error() or 'see the run log'}"
        log.line("cancelled" if cancelled else f"exited with code {rc}")
        log.upload()
        q.settle(rid, self.owner, rc, cancelled=cancelled, error=error)
        log.close()

    def _set_logs_uri(self, run_id: str, uri: str) -> None:
        with self.reg.session() as s:
            r = s.get(Run, run_id)
            if r is not None:
                r.logs_uri = uri


def _stop(p: subprocess.Popen[bytes]) -> None:
    p.terminate()
    try:
        os.kill(p.pid, signal.SIGCONT)  # a stopped process gets the TERM only once it runs again
    except ProcessLookupError:
        pass
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


class _RunLog:
    """The run's log: a local file the child writes, uploaded to the lake (its end, at most
    ``LOG_LIMIT`` bytes) after what earlier attempts left there."""

    def __init__(self, job: JobView) -> None:
        from datalake import Lake

        self.store = Lake.open(job.config["lake"]).store
        self.path = log_path(job.run_id)
        self.uri = self.store.url(self.path)
        try:
            self.before = self.store.read(self.path)
        except Exception:  # noqa: BLE001 - first attempt: no log yet
            self.before = b""
        fd, self.local = tempfile.mkstemp(prefix="mmlake-job-", suffix=".log")
        os.close(fd)

    def line(self, text: str) -> None:
        with open(self.local, "ab") as f:
            f.write(f"[mmlake {utcnow().isoformat(timespec='seconds')}] {text}\n".encode())

    def content(self) -> bytes:
        with open(self.local, "rb") as f:
            data = self.before + f.read()
        return data[-LOG_LIMIT:]

    def upload(self) -> None:
        try:
            self.store.put(self.path, self.content())
        except Exception:  # noqa: BLE001 - a log upload must not fail the job; the next one retries
            traceback.print_exc()

    def last_error(self) -> str | None:
        lines = [ln for ln in self.content().decode(errors="replace").splitlines()
                 if ln.strip() and not ln.startswith("[mmlake ")]
        return lines[-1][:500] if lines else None

    def close(self) -> None:
        try:
            os.unlink(self.local)
        except OSError:
            pass


# -- the child process ---------------------------------------------------------------------------

def _pdeathsig() -> Any:
    """A function for ``preexec_fn`` that asks Linux to SIGKILL the child when the thread that
    started it exits (a killed registry takes its jobs' processes with it). It is set between
    fork and exec, so no job process ever runs without it; the libc function is looked up here,
    in the parent, so the child runs no Python import before exec."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    kill = int(signal.SIGKILL)
    return lambda: prctl(1, kill)  # PR_SET_PDEATHSIG


_PDEATHSIG = _pdeathsig()


def _die_with_parent() -> None:
    """Exit if the worker that started this process is already gone (it died before the
    death signal could matter)."""
    parent = int(os.environ.get("MMLAKE_JOB_PARENT", "0") or 0)
    if parent and os.getppid() != parent:
        sys.exit(70)


def exec_job() -> int:
    """Run the job named by $MMLAKE_JOB_RUN against the registry at $MMLAKE_JOB_DB."""
    _die_with_parent()
    from datalake import Lake
    from registry.jobs import run_ingest, validate_job, validate_pipeline_job
    from registry.service import Registry

    reg = Registry(os.environ["MMLAKE_JOB_DB"], migrate_db=False,
                   lineage_target=os.environ.get("MMLAKE_JOB_LINEAGE") or None)
    rid = os.environ["MMLAKE_JOB_RUN"]
    job = JobQueue(reg).get(rid)
    lake = Lake.open(job.config["lake"])
    print(f"job process {os.getpid()} ready: {job.spec.get('type')} job {rid} in {lake.uri}", flush=True)
    if job.spec.get("type") == "pipeline":
        from pipelines.run import run_pipeline

        spec = validate_pipeline_job(job.spec)
        summary = run_pipeline(spec, lake, reg, progress=False, run_id=rid)
        print(f"done: {summary.get('output')} kept {summary.get('kept')}", flush=True)
        return 0
    import dataclasses

    srcs, cfg = validate_job(job.spec)
    if job.config.get("roots") is not None:
        cfg = dataclasses.replace(cfg, roots=tuple(job.config["roots"]))
    info, result = run_ingest(reg, lake, srcs, cfg, run=reg.get_run(rid), progress=False)
    print(f"done: {info.outputs} ingested {result.ingested if result else 0}", flush=True)
    return 0


def _main(argv: list[str]) -> int:
    if argv[:1] != ["exec"]:
        print("usage: python -m registry.worker exec   (started by a JobWorker; see mmlake registry worker)",
              file=sys.stderr)
        return 2
    try:
        return exec_job()
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except Exception:  # noqa: BLE001 - the traceback is the log's end; the worker records the failure
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
