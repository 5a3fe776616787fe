"""The registry service: datasets, versions, runs, lineage, lifecycle -- no web imports.

Everything a team needs to know about its data goes through here: which versions exist
(registered from committed manifests, idempotently: the same digest twice is one version),
which run made them from which inputs, and what state they are in. The REST API, the web
pages, the CLI and the Python client are thin layers over this class; the in-process
``Registry`` and the HTTP client expose the same methods.

Versions are numbered 1, 2, 3 ... per dataset under a row lock on the dataset (so 20
concurrent registrations on PostgreSQL get 20 distinct numbers) and also keep their content
id (``captions@3`` and ``captions@acf464d06de0`` name the same version).

Lifecycle (per version)::

    draft -> active <-> deprecated <-> archived -> deleted      (draft -> deleted too)

``resolve(ref, for_read=True)`` warns on deprecated versions (``DeprecatedVersionWarning``)
and refuses archived and deleted ones; ``@latest`` is the newest active or deprecated
version. A deleted version's objects are removed by ``purge`` once its retention has passed;
its row stays, so lineage still shows where data went.
"""

from __future__ import annotations

import datetime as dt
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from datalake import DatasetVersion
from datalake.store import open_store
from datalake.version import VersionError
from registry.db import make_engine, migrate
from registry.models import LIFECYCLE, AuditEvent, Dataset, Replica, Run, RunInput, RunOutput, utcnow
from registry.models import DatasetVersion as VersionRow
from registry.types import (
    Conflict,
    DatasetInfo,
    DeprecatedVersionWarning,
    LifecycleError,
    LineageGraph,
    NotFound,
    RegistryError,
    ReplicaInfo,
    RunInfo,
    VersionInfo,
    parse_registry_ref,
)

__all__ = ["Registry", "ALLOWED_TRANSITIONS", "RUN_STATUSES"]

T = TypeVar("T")

ALLOWED_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "draft": ("active", "deleted"),
    "active": ("deprecated",),
    "deprecated": ("active", "archived"),
    "archived": ("deprecated", "deleted"),
    "deleted": (),
}
DATASET_STATES = ("active", "deprecated", "archived")
RUN_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
RUN_KINDS = ("ingest", "pipeline", "sync", "job", "synth", "train")


def _iso(t: dt.datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


class Registry:
    """The registry on a database URL (``sqlite:///...`` or ``postgresql://...``)."""

    def __init__(self, url: str, *, migrate_db: bool = True, retention_s: float = 7 * 86400,
                 lineage_target: str | None = None, namespace: str = "mmlake") -> None:
        self.url = url
        self.engine = make_engine(url)
        if migrate_db:
            migrate(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(self.engine.execution_options(mmlake_read=True), expire_on_commit=False)
        self.retention_s = retention_s
        self.namespace = namespace
        self.lineage_target = lineage_target
        from registry.openlineage import make_emitter

        self.emitter = make_emitter(lineage_target)

    def close(self) -> None:
        self.engine.dispose()

    def __repr__(self) -> str:
        return f"Registry({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextmanager
    def session(self, read: bool = False) -> Iterator[Session]:
        """A transaction; ``read=True`` for read-only work (on SQLite it takes no write lock)."""
        with (self._read_sessions if read else self._sessions)() as s, s.begin():
            yield s

    def _retry(self, fn: Callable[[Session], T], attempts: int = 8) -> T:
        """Run ``fn`` in a transaction, retrying on unique-constraint races and lock errors."""
        for i in range(attempts):
            try:
                with self.session() as s:
                    return fn(s)
            except (IntegrityError, OperationalError):
                if i == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _audit(s: Session, actor: str | None, action: str, target: str, **detail: Any) -> None:
        """One audit row, in the transaction of the change it records."""
        s.add(AuditEvent(actor=actor, action=action, target=target[:300], detail=detail))

    def audit(self, *, limit: int = 100, offset: int = 0, actor: str | None = None,
              action: str | None = None) -> list[dict[str, Any]]:
        """Who changed what, newest first."""
        with self.session(read=True) as s:
            stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).offset(offset).limit(limit)
            if actor:
                stmt = stmt.where(AuditEvent.actor == actor)
            if action:
                stmt = stmt.where(AuditEvent.action.startswith(action))
            return [{"id": e.id, "at": _iso(e.at), "actor": e.actor, "action": e.action, "target": e.target,
                     "detail": dict(e.detail or {})} for e in s.scalars(stmt).all()]

    # ------------------------------------------------------------------------------------
    # datasets

    def _dataset_info(self, s: Session, d: Dataset) -> DatasetInfo:
        return self._dataset_infos(s, [d])[0]

    def _dataset_infos(self, s: Session, ds: Sequence[Dataset]) -> list[DatasetInfo]:
        """Infos for many datasets in three queries (not 2 per dataset)."""
        ids = [d.id for d in ds]
        if not ids:
            return []
        # per dataset, two index lookups on (dataset_id, number) -- not a scan of every version:
        # numbers are dense from 1, so the highest number is the count
        count = (select(func.max(VersionRow.number)).where(VersionRow.dataset_id == Dataset.id)
                 .correlate(Dataset).scalar_subquery())
        newest = (select(VersionRow.number).where(VersionRow.dataset_id == Dataset.id,
                                                  VersionRow.state.in_(("active", "deprecated")))
                  .order_by(VersionRow.number.desc()).limit(1).correlate(Dataset).scalar_subquery())
        rows = s.execute(select(Dataset.id, count, newest).where(Dataset.id.in_(ids))).all()
        counts = {dsid: n or 0 for dsid, n, _ in rows}
        pairs = [(dsid, num) for dsid, _, num in rows if num is not None]
        latest = {}
        if pairs:
            latest = {dsid: (num, samples) for dsid, num, samples in s.execute(
                select(VersionRow.dataset_id, VersionRow.number, VersionRow.samples).where(
                    or_(*((VersionRow.dataset_id == a) & (VersionRow.number == b) for a, b in pairs)))).all()}
        return [DatasetInfo(d.name, d.kind, d.owner, d.description or "", list(d.tags or []), d.state,
                            _iso(d.created_at) or "", _iso(d.updated_at) or "", versions=counts.get(d.id, 0),
                            latest=latest[d.id][0] if d.id in latest else None,
                            samples=latest[d.id][1] if d.id in latest else None) for d in ds]

    def _dataset(self, s: Session, name: str, lock: bool = False) -> Dataset:
        parse_registry_ref(name)
        q = select(Dataset).where(Dataset.name == name)
        if lock:
            q = q.with_for_update()
        d = s.scalar(q)
        if d is None:
            known = s.scalars(select(Dataset.name).order_by(Dataset.name).limit(20)).all()
            raise NotFound(f"dataset {name!r} is not registered; known: {list(known) or 'none'}")
        return d

    def create_dataset(self, name: str, *, kind: str | None = None, owner: str | None = None,
                       description: str = "", tags: Sequence[str] = (), actor: str | None = None) -> DatasetInfo:
        """Create a dataset, or update the given fields of an existing one."""
        parse_registry_ref(name)
        _check_tags(tags)

        def fn(s: Session) -> DatasetInfo:
            d = s.scalar(select(Dataset).where(Dataset.name == name))
            if d is None:
                d = Dataset(name=name, kind=kind, owner=owner, description=description, tags=list(tags))
                s.add(d)
                s.flush()
            else:
                d.kind = kind or d.kind
                d.owner = owner or d.owner
                d.description = description or d.description
                d.tags = list(tags) or d.tags
                d.updated_at = utcnow()
            self._audit(s, actor, "dataset.upsert", name, kind=kind, owner=owner, tags=list(tags))
            return self._dataset_info(s, d)

        return self._retry(fn)

    def update_dataset(self, name: str, *, description: str | None = None, owner: str | None = None,
                       tags: Sequence[str] | None = None, state: str | None = None,
                       actor: str | None = None) -> DatasetInfo:
        if tags is not None:
            _check_tags(tags)
        if state is not None and state not in DATASET_STATES:
            raise RegistryError(f"dataset state {state!r} is not one of {list(DATASET_STATES)}")
        with self.session() as s:
            d = self._dataset(s, name)
            if description is not None:
                d.description = description
            if owner is not None:
                d.owner = owner
            if tags is not None:
                d.tags = list(tags)
            if state is not None:
                d.state = state
            d.updated_at = utcnow()
            self._audit(s, actor, "dataset.state" if state is not None else "dataset.update", name,
                        **{k: v for k, v in (("state", state), ("owner", owner), ("tags", tags))
                           if v is not None}, **({"description": "changed"} if description is not None else {}))
            return self._dataset_info(s, d)

    def get_dataset(self, name: str) -> DatasetInfo:
        with self.session(read=True) as s:
            return self._dataset_info(s, self._dataset(s, name))

    def list_datasets(self, q: str | None = None, kind: str | None = None, state: str | None = None,
                      tag: str | None = None, limit: int = 500, offset: int = 0) -> list[DatasetInfo]:
        with self.session(read=True) as s:
            stmt = select(Dataset).order_by(Dataset.name)
            if not tag:  # tags are JSON lists: filtered below, then paged
                stmt = stmt.offset(offset).limit(limit)
            if q:
                like = f"%{q.lower()}%"
                stmt = stmt.where(or_(func.lower(Dataset.name).like(like), func.lower(Dataset.description).like(like)))
            if kind:
                stmt = stmt.where(Dataset.kind == kind)
            if state:
                stmt = stmt.where(Dataset.state == state)
            rows = s.scalars(stmt).all()
            if tag:
                rows = [d for d in rows if tag in (d.tags or [])][offset: offset + limit]
            return self._dataset_infos(s, rows)

    # ------------------------------------------------------------------------------------
    # versions

    def _version_info(self, d: Dataset, v: VersionRow) -> VersionInfo:
        return VersionInfo(d.name, v.number, v.version, v.digest, v.manifest_uri, v.samples, v.bytes,
                           v.schema_version, v.state, _iso(v.created_at) or "", _iso(v.state_changed_at) or "",
                           v.created_by_run, dict(v.stats or {}), v.rejects, v.purged_at is not None)

    def _latest_row(self, s: Session, d: Dataset) -> VersionRow | None:
        return s.scalar(select(VersionRow).where(VersionRow.dataset_id == d.id,
                                                 VersionRow.state.in_(("active", "deprecated")))
                        .order_by(VersionRow.number.desc()).limit(1))

    def _find(self, s: Session, ref: str) -> tuple[Dataset, VersionRow]:
        name, sel = parse_registry_ref(ref)
        d = self._dataset(s, name)
        if sel == "latest":
            v = self._latest_row(s, d)
            if v is None:
                raise NotFound(f"{name} has no active version (register one, or name a version: {name}@<number>)")
            return d, v
        if sel.isdigit() and len(sel) < 12:
            v = s.scalar(select(VersionRow).where(VersionRow.dataset_id == d.id, VersionRow.number == int(sel)))
        else:
            vs = s.scalars(select(VersionRow).where(VersionRow.dataset_id == d.id,
                                                    VersionRow.version.startswith(sel))).all()
            if len(vs) > 1:
                raise Conflict(f"{ref} is ambiguous: {[f'{name}@{x.number}' for x in vs]}")
            v = vs[0] if vs else None
        if v is None:
            nums = s.scalars(select(VersionRow.number).where(VersionRow.dataset_id == d.id)
                             .order_by(VersionRow.number)).all()
            raise NotFound(f"{ref}: no such version; {name} has versions {list(nums) or 'none'}")
        return d, v

    def get_version(self, ref: str) -> VersionInfo:
        with self.session(read=True) as s:
            return self._version_info(*self._find(s, ref))

    def resolve(self, ref: str, *, for_read: bool = True) -> VersionInfo:
        """The version ``ref`` names. With ``for_read`` (what loaders do), a deprecated version
        warns and an archived or deleted one raises ``LifecycleError``."""
        info = self.get_version(ref)
        if for_read:
            ds = self.get_dataset(info.dataset)
            if info.state in ("deleted", "archived") or ds.state == "archived":
                what = info.state if info.state in ("deleted", "archived") else "in an archived dataset"
                raise LifecycleError(f"{info.ref} is {what} (since {info.state_changed_at}): it cannot be read; "
                                     f"use {info.dataset}@latest" + ("" if info.state == "deleted" else
                                                                     " or restore it (transition to deprecated)"))
            if info.state == "deprecated" or ds.state == "deprecated":
                warnings.warn(f"{info.ref} is deprecated: prefer {info.dataset}@latest", DeprecatedVersionWarning,
                              stacklevel=2)
        return info

    def list_versions(self, name: str, *, offset: int = 0, limit: int | None = None) -> list[VersionInfo]:
        with self.session(read=True) as s:
            d = self._dataset(s, name)
            stmt = select(VersionRow).where(VersionRow.dataset_id == d.id).order_by(VersionRow.number).offset(offset)
            if limit is not None:
                stmt = stmt.limit(limit)
            return [self._version_info(d, v) for v in s.scalars(stmt).all()]

    def open_version(self, ref: str, *, for_read: bool = True) -> DatasetVersion:
        """Resolve ``ref`` and open its manifest from the lake."""
        info = self.resolve(ref, for_read=for_read)
        return DatasetVersion.open(info.manifest_uri)

    def register_version(self, version: DatasetVersion | str, *, run_id: str | None = None,
                         state: str = "active", owner: str | None = None, actor: str | None = None) -> VersionInfo:
        """Register a committed version from its manifest (a ``DatasetVersion`` or manifest URI).
        Registering the same digest twice returns the existing version unchanged."""
        if state not in ("draft", "active"):
            raise RegistryError(f"a new version starts as draft or active, not {state!r}")
        if isinstance(version, str):
            try:
                version = DatasetVersion.open(version)
            except VersionError as exc:
                raise RegistryError(str(exc)) from None
        opened = version
        info = self._retry(lambda s: self._register_in(s, opened, run_id, state, owner, actor))
        self.sync_lake_latest(info.dataset, info.manifest_uri)
        return info

    def _register_in(self, s: Session, version: DatasetVersion, run_id: str | None, state: str,
                     owner: str | None, actor: str | None = None) -> VersionInfo:
        """Register ``version`` inside the transaction ``s`` (see :meth:`register_version`)."""
        m = version.manifest
        kinds = list(m.stats.get("kinds", {}))
        if run_id is not None:
            self._run(s, run_id)  # an unknown run is a 404, not a foreign-key error retried into a 500

        def fn(s: Session) -> VersionInfo:
            d = s.scalar(select(Dataset).where(Dataset.name == m.dataset).with_for_update())
            if d is None:
                d = Dataset(name=m.dataset, kind=kinds[0] if len(kinds) == 1 else ("mixed" if kinds else None),
                            owner=owner, description="", tags=[])
                s.add(d)
                s.flush()
            existing = s.scalar(select(VersionRow).where(VersionRow.dataset_id == d.id, VersionRow.version == m.version))
            if existing is not None:  # same content: same version; the run still produced it
                if run_id is not None:
                    s.merge(RunOutput(run_id=run_id, version_id=existing.id))
                return self._version_info(d, existing)
            number = (s.scalar(select(func.max(VersionRow.number)).where(VersionRow.dataset_id == d.id)) or 0) + 1
            row = VersionRow(dataset_id=d.id, number=number, version=m.version, digest=m.digest,
                             manifest_uri=version.uri, samples=m.samples, bytes=m.bytes,
                             schema_version=m.schema_version, stats=m.stats, rejects=m.rejects, state=state,
                             created_by_run=run_id)
            s.add(row)
            d.updated_at = utcnow()
            s.flush()
            if run_id is not None:
                s.merge(RunOutput(run_id=run_id, version_id=row.id))
            self._audit(s, actor, "version.register", f"{d.name}@{number}", version=m.version, run_id=run_id,
                        samples=m.samples)
            return self._version_info(d, row)

        return fn(s)

    # ------------------------------------------------------------------------------------
    # runs

    def _run_info(self, s: Session, r: Run) -> RunInfo:
        return self._run_infos(s, [r])[0]

    def _run_infos(self, s: Session, runs: Sequence[Run]) -> list[RunInfo]:
        """Infos for many runs in three queries (their input and output refs batched)."""
        ids = [r.id for r in runs]

        def refs(table: type[RunInput] | type[RunOutput]) -> dict[str, list[str]]:
            out: dict[str, list[str]] = {}
            if not ids:
                return out
            rows = s.execute(select(table.run_id, Dataset.name, VersionRow.number)
                             .join(VersionRow, VersionRow.dataset_id == Dataset.id)
                             .join(table, table.version_id == VersionRow.id).where(table.run_id.in_(ids))
                             .order_by(Dataset.name, VersionRow.number)).all()
            for rid, n, num in rows:
                out.setdefault(rid, []).append(f"{n}@{num}")
            return out

        ins, outs = refs(RunInput), refs(RunOutput)
        return [RunInfo(r.id, r.kind, r.name, r.status, dict(r.spec or {}), dict(r.parameters or {}),
                        dict(r.counts or {}), _iso(r.created_at) or "", _iso(r.started_at), _iso(r.ended_at),
                        r.code_version, r.error, r.logs_uri, r.submitted_by, ins.get(r.id, []), outs.get(r.id, []))
                for r in runs]

    def start_run(self, kind: str, name: str, *, inputs: Sequence[str] = (), spec: dict[str, Any] | None = None,
                  parameters: dict[str, Any] | None = None, code_version: str | None = None,
                  status: str = "running", submitted_by: str | None = None, run_id: str | None = None,
                  logs_uri: str | None = None) -> RunInfo:
        """Record a run and its input versions (refs); emits an OpenLineage START event."""
        if kind not in RUN_KINDS:
            raise RegistryError(f"run kind {kind!r} is not one of {list(RUN_KINDS)}")
        if status not in ("queued", "running"):
            raise RegistryError("a run starts as queued or running")
        if not name or len(name) > 200:
            raise RegistryError("a run needs a name of 1-200 characters")
        rid = run_id or str(uuid.uuid4())
        _check_uuid(rid)
        with self.session() as s:
            r = self._new_run(s, rid, kind, name, inputs, spec, parameters, code_version, status, submitted_by,
                              logs_uri)
            info = self._run_info(s, r)
        if status == "running":
            self.emitter.emit("START", info, self)
        return info

    def _new_run(self, s: Session, rid: str, kind: str, name: str, inputs: Sequence[str],
                 spec: dict[str, Any] | None, parameters: dict[str, Any] | None, code_version: str | None,
                 status: str, submitted_by: str | None, logs_uri: str | None) -> Run:
        """The run row and its input edges, inside the transaction ``s``."""
        if s.get(Run, rid) is not None:
            raise Conflict(f"run {rid} already exists")
        versions = [self._find(s, ref)[1] for ref in inputs]
        r = Run(id=rid, kind=kind, name=name, status=status, spec=spec or {}, parameters=parameters or {},
                code_version=code_version or _code_version(), counts={}, submitted_by=submitted_by,
                logs_uri=logs_uri, started_at=utcnow() if status == "running" else None)
        s.add(r)
        s.flush()
        for v in {v.id: v for v in versions}.values():
            s.add(RunInput(run_id=rid, version_id=v.id))
        s.flush()
        return r

    def mark_running(self, run_id: str) -> RunInfo:
        with self.session() as s:
            r = self._run(s, run_id)
            r.status, r.started_at = "running", utcnow()
            info = self._run_info(s, r)
        self.emitter.emit("START", info, self)
        return info

    def finish_run(self, run_id: str, status: str, *, counts: dict[str, Any] | None = None,
                   outputs: Sequence[DatasetVersion | str] = (), error: str | None = None) -> RunInfo:
        """Close a run; register its output versions (manifest URIs or ``DatasetVersion``s) as
        made by it; emits COMPLETE or FAIL."""
        if status not in ("succeeded", "failed", "cancelled"):
            raise RegistryError(f"a run finishes as succeeded, failed or cancelled, not {status!r}")
        opened = []
        for out in outputs:  # every output is read and checked before anything is written
            if isinstance(out, str):
                try:
                    out = DatasetVersion.open(out)
                except VersionError as exc:
                    raise RegistryError(str(exc)) from None
            opened.append(out)

        def fn(s: Session) -> RunInfo:  # outputs and the run's end: one transaction, all or nothing
            r = self._run(s, run_id)
            if r.status in ("succeeded", "failed", "cancelled"):
                raise Conflict(f"run {run_id} already finished ({r.status})")
            for v in opened:
                self._register_in(s, v, run_id, "active", None, r.submitted_by)
            r.status, r.ended_at, r.error = status, utcnow(), error
            r.counts = counts or {}
            if r.started_at is None:
                r.started_at = r.ended_at
            s.flush()
            return self._run_info(s, r)

        info = self._retry(fn)
        for ref in info.outputs:
            self.sync_lake_latest(ref.rsplit("@", 1)[0])
        self.emitter.emit({"succeeded": "COMPLETE", "cancelled": "ABORT"}.get(status, "FAIL"), info, self)
        return info

    def _run(self, s: Session, run_id: str) -> Run:
        r = s.get(Run, run_id)
        if r is None:
            raise NotFound(f"run {run_id!r} does not exist")
        return r

    def get_run(self, run_id: str) -> RunInfo:
        with self.session(read=True) as s:
            return self._run_info(s, self._run(s, run_id))

    def list_runs(self, *, status: str | None = None, kind: str | None = None, dataset: str | None = None,
                  limit: int = 100, offset: int = 0) -> list[RunInfo]:
        with self.session(read=True) as s:
            stmt = select(Run).order_by(Run.created_at.desc(), Run.id).offset(offset).limit(limit)
            if status:
                stmt = stmt.where(Run.status == status)
            if kind:
                stmt = stmt.where(Run.kind == kind)
            if dataset:
                d = self._dataset(s, dataset)
                ids = select(RunOutput.run_id).join(VersionRow, VersionRow.id == RunOutput.version_id).where(
                    VersionRow.dataset_id == d.id).union(
                    select(RunInput.run_id).join(VersionRow, VersionRow.id == RunInput.version_id).where(
                        VersionRow.dataset_id == d.id))
                stmt = stmt.where(Run.id.in_(ids))
            return self._run_infos(s, s.scalars(stmt).all())

    # ------------------------------------------------------------------------------------
    # lineage

    def lineage(self, ref: str, direction: str = "both", depth: int | None = None) -> LineageGraph:
        """Versions and runs upstream (``up``), downstream (``down``) or ``both`` of ``ref``,
        to ``depth`` version hops (None = all the way)."""
        if direction not in ("up", "down", "both"):
            raise RegistryError("direction is up, down or both")
        if depth is not None and depth < 0:
            raise RegistryError("depth must be >= 0")
        with self.session(read=True) as s:
            d, root = self._find(s, ref)
            nodes: dict[str, dict[str, Any]] = {}
            edges: set[tuple[str, str]] = set()
            names = {d.id: d.name}

            def vnode(v: VersionRow) -> str:
                if v.dataset_id not in names:
                    names[v.dataset_id] = s.get(Dataset, v.dataset_id).name  # type: ignore[union-attr]
                key = f"v:{names[v.dataset_id]}@{v.number}"
                nodes.setdefault(key, {"id": key, "type": "version", "ref": f"{names[v.dataset_id]}@{v.number}",
                                       "dataset": names[v.dataset_id], "number": v.number, "state": v.state,
                                       "samples": v.samples})
                return key

            def rnode(r: Run) -> str:
                key = f"r:{r.id}"
                nodes.setdefault(key, {"id": key, "type": "run", "run_id": r.id, "name": r.name, "kind": r.kind,
                                       "status": r.status})
                return key

            root_key = vnode(root)
            for dirn in (("up", "down") if direction == "both" else (direction,)):
                frontier, seen, hops = [root], {root.id}, 0
                while frontier and (depth is None or hops < depth):
                    ids = [v.id for v in frontier]
                    nxt: list[VersionRow] = []
                    if dirn == "up":
                        rows = s.execute(select(Run, RunOutput.version_id).join(RunOutput, RunOutput.run_id == Run.id)
                                         .where(RunOutput.version_id.in_(ids))).all()
                        for r, vid in rows:
                            edges.add((rnode(r), vnode(s.get(VersionRow, vid))))  # type: ignore[arg-type]
                            for v in s.scalars(select(VersionRow).join(RunInput, RunInput.version_id == VersionRow.id)
                                               .where(RunInput.run_id == r.id)).all():
                                edges.add((vnode(v), rnode(r)))
                                if v.id not in seen:
                                    seen.add(v.id)
                                    nxt.append(v)
                    else:
                        rows = s.execute(select(Run, RunInput.version_id).join(RunInput, RunInput.run_id == Run.id)
                                         .where(RunInput.version_id.in_(ids))).all()
                        for r, vid in rows:
                            edges.add((vnode(s.get(VersionRow, vid)), rnode(r)))  # type: ignore[arg-type]
                            for v in s.scalars(select(VersionRow).join(RunOutput, RunOutput.version_id == VersionRow.id)
                                               .where(RunOutput.run_id == r.id)).all():
                                edges.add((rnode(r), vnode(v)))
                                if v.id not in seen:
                                    seen.add(v.id)
                                    nxt.append(v)
                    frontier, hops = nxt, hops + 1
            return LineageGraph(root_key, sorted(nodes.values(), key=lambda n: n["id"]), sorted(edges))

    # ------------------------------------------------------------------------------------
    # lifecycle

    def transition(self, ref: str, to: str, *, actor: str | None = None) -> VersionInfo:
        """Move a version along its lifecycle; refuses a move the rules do not allow."""
        if to not in LIFECYCLE:
            raise RegistryError(f"state {to!r} is not one of {list(LIFECYCLE)}")
        with self.session() as s:
            d, v = self._find(s, ref)
            if to == v.state:
                return self._version_info(d, v)
            allowed = ALLOWED_TRANSITIONS[v.state]
            if to not in allowed:
                raise LifecycleError(f"{d.name}@{v.number} is {v.state}; it can move to "
                                     f"{' or '.join(allowed) if allowed else 'nothing (final)'}, not {to}")
            self._audit(s, actor, "version.lifecycle", f"{d.name}@{v.number}", **{"from": v.state, "to": to})
            v.state, v.state_changed_at = to, utcnow()
            info = self._version_info(d, v)
        self.sync_lake_latest(info.dataset, info.manifest_uri)
        return info

    def purge(self, *, now: dt.datetime | None = None, actor: str | None = None) -> list[str]:
        """Remove the objects of versions deleted more than ``retention_s`` ago: manifest first,
        then shards, indexes, rejects and sidecar tables (scores, signatures), and the same in
        every replica. Returns the refs purged. The rows stay (lineage keeps them)."""
        now = now or utcnow()
        cutoff = now - dt.timedelta(seconds=self.retention_s)
        with self.session() as s:
            rows = s.execute(select(Dataset, VersionRow).join(VersionRow, VersionRow.dataset_id == Dataset.id)
                             .where(VersionRow.state == "deleted", VersionRow.purged_at.is_(None))).all()
            due = [(d.name, v.number, v.id, v.manifest_uri) for d, v in rows
                   if (v.state_changed_at if v.state_changed_at.tzinfo else v.state_changed_at.replace(tzinfo=dt.UTC)) <= cutoff]
        purged = []
        for name, number, vid, uri in due:
            with self.session(read=True) as s:
                replicas = [(r.id, r.manifest_uri) for r in s.scalars(select(Replica).where(Replica.version_id == vid))]
            removed = _delete_version_objects(uri)
            for _rid, rep_uri in replicas:
                removed += _delete_version_objects(rep_uri)
            with self.session() as s:
                v = s.get(VersionRow, vid)
                v.purged_at = utcnow()  # type: ignore[union-attr]
                for r in s.scalars(select(Replica).where(Replica.version_id == vid)):
                    r.status = "purged"
                self._audit(s, actor, "version.purge", f"{name}@{number}", objects=removed, replicas=len(replicas))
            purged.append(f"{name}@{number}")
            self.sync_lake_latest(name, uri)
        return purged

    def sync_lake_latest(self, name: str, touched: str | None = None) -> None:
        """Point the lake's ``refs/latest`` of ``name`` at the registry's ``name@latest`` (or
        remove it when no version is readable): the registry is that pointer's writer of record,
        so the lake and the registry never disagree on what "latest" is."""
        with self.session(read=True) as s:
            d = s.scalar(select(Dataset).where(Dataset.name == name))
            latest = self._latest_row(s, d) if d is not None else None
        uris = [u for u in (latest.manifest_uri if latest is not None else None, touched) if u]
        stores = {u.rsplit("/versions/", 1)[0] for u in uris if "/versions/" in u}  # where the pointer may be
        for root in stores:
            try:
                st = open_store(root)
                if latest is not None and latest.manifest_uri.startswith(root + "/versions/"):
                    st.put("refs/latest", latest.version.encode())
                elif st.exists("refs/latest"):
                    st.delete("refs/latest")
            except Exception as exc:  # noqa: BLE001 - a read-only or unreachable lake keeps its pointer
                warnings.warn(f"could not move refs/latest of {name} in {root}: {exc}", RuntimeWarning, stacklevel=2)

    # ------------------------------------------------------------------------------------
    # replicas

    def sync(self, ref: str, target: str, *, submitted_by: str | None = None,
             progress: Callable[[int, int], None] | None = None) -> ReplicaInfo:
        """Copy a version to another lake (``target`` URI), verify every object's sha256 there,
        then record the replica. Resumable: objects already present and verified are skipped.
        A failed copy records a failed sync run and no replica."""
        from registry.replicas import copy_version

        info = self.resolve(ref, for_read=False)
        if info.state == "deleted":
            raise LifecycleError(f"{info.ref} is deleted: nothing to sync")
        run = self.start_run("sync", f"sync {info.ref} -> {target}", inputs=[info.ref],
                             parameters={"target": target}, submitted_by=submitted_by)
        try:
            manifest_uri, nbytes, copied = copy_version(DatasetVersion.open(info.manifest_uri), target, progress)
        except Exception as exc:
            self.finish_run(run.id, "failed", error=f"{type(exc).__name__}: {exc}")
            raise
        target_root = open_store(target).uri
        with self.session() as s:
            _d, v = self._find(s, info.ref)
            rep = s.scalar(select(Replica).where(Replica.version_id == v.id, Replica.store_uri == target_root))
            if rep is None:
                rep = Replica(version_id=v.id, store_uri=target_root)
                s.add(rep)
            rep.manifest_uri, rep.status, rep.bytes, rep.verified_at = manifest_uri, "verified", nbytes, utcnow()
            out = ReplicaInfo(info.ref, target_root, manifest_uri, "verified", nbytes, _iso(rep.verified_at) or "")
        self.finish_run(run.id, "succeeded", counts={"objects_copied": copied, "bytes": nbytes})
        return out

    def list_replicas(self, ref: str) -> list[ReplicaInfo]:
        with self.session(read=True) as s:
            d, v = self._find(s, ref)
            rows = s.scalars(select(Replica).where(Replica.version_id == v.id).order_by(Replica.store_uri)).all()
            return [ReplicaInfo(f"{d.name}@{v.number}", r.store_uri, r.manifest_uri, r.status, r.bytes,
                                _iso(r.verified_at) or "") for r in rows]

    # ------------------------------------------------------------------------------------
    # users and tokens (see registry.auth)

    def create_user(self, name: str, role: str, *, actor: str | None = None) -> str:
        from registry.auth import create_user

        return create_user(self, name, role, actor=actor)

    # ------------------------------------------------------------------------------------
    # jobs (see registry.worker; the server's JobRunner adds validation and a worker)

    def list_jobs(self, *, state: str | None = None, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        from registry.worker import JobQueue

        return [j.to_json() for j in JobQueue(self).list(state=state, offset=offset, limit=limit)]

    def get_job(self, run_id: str) -> dict[str, Any]:
        from registry.worker import JobQueue

        return JobQueue(self).get(run_id).to_json()

    def cancel_job(self, run_id: str, *, actor: str | None = None, role: str | None = "admin") -> dict[str, Any]:
        from registry.worker import JobQueue

        return JobQueue(self).cancel(run_id, actor, role).to_json()

    def retry_job(self, run_id: str, *, actor: str | None = None, role: str | None = "admin") -> RunInfo:
        from registry.worker import JobQueue

        return JobQueue(self).retry(run_id, actor, role)

    def submit_job(self, spec: dict[str, Any], *, lake_uri: str | None = None,
                   submitted_by: str | None = None) -> RunInfo:
        """Queue a job (validated as the server does); a worker runs it (``mmlake registry worker``)."""
        from registry.jobs import JobRunner

        return JobRunner(self, lake_uri).submit(spec, submitted_by=submitted_by, start_worker=False)

    def run_log(self, run_id: str, tail: int = 65536) -> str:
        from registry.worker import read_log

        return read_log(self, run_id, tail)

    def authenticate(self, token: str | None) -> tuple[str, str] | None:
        from registry.auth import authenticate

        return authenticate(self, token)


def _check_tags(tags: Sequence[str]) -> None:
    if isinstance(tags, str) or any(not isinstance(t, str) or not t or len(t) > 50 for t in tags) or len(tags) > 50:
        raise RegistryError("tags are a list of up to 50 non-empty strings of at most 50 characters")


def _check_uuid(rid: str) -> None:
    try:
        uuid.UUID(rid)
    except (ValueError, AttributeError, TypeError):
        raise RegistryError(f"run id {rid!r} is not a UUID") from None


def _code_version() -> str:
    from mmlake import __version__

    return f"mmlake {__version__}"


def _delete_version_objects(manifest_uri: str) -> int:
    """Delete a version's manifest (first: the version disappears), then its objects: shards,
    indexes, rejects, sidecar tables. Returns how many objects were removed."""
    try:
        v = DatasetVersion.open(manifest_uri)
    except VersionError:
        return 0  # already gone
    store = v.store
    paths = [f"versions/{v.manifest.version}.json"]
    for sh in v.manifest.shards:
        paths += [sh.path, sh.index]
    if v.manifest.rejects:
        paths.append(v.manifest.rejects["path"])
    paths += list((v.manifest.extras or {}).values())
    removed = 0
    for p in paths:
        if store.exists(p):
            store.delete(p)
            removed += 1
    return removed
