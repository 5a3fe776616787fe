"""The registry's tables (SQLAlchemy 2), the same on SQLite and PostgreSQL.

Schema changes go through Alembic (``registry/migrations``); a test checks that the migrations
and these models describe the same schema.

- ``Dataset``: a name and what it is; ``DatasetVersion``: an immutable, committed manifest in
  the lake, numbered 1, 2, 3 ... per dataset and also named by its content digest;
- ``Run``: a pipeline, ingest or sync run, with its spec, counts and status;
  ``RunInput`` / ``RunOutput``: lineage edges version -> run -> version;
- ``Replica``: a verified copy of a version in another store;
- ``User`` / ``Token``: who may do what (reader < writer < admin); tokens are stored hashed,
  may expire, are revoked rather than deleted, and record when they were last used;
- ``Job``: a submitted run's durable work item (spec, lease, heartbeat, attempts, cancel flag),
  claimed by a worker loop (``registry.worker``);
- ``AuditEvent``: who changed what (registrations, lifecycle, users, tokens, jobs), one row per change.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

__all__ = ["Base", "Dataset", "DatasetVersion", "Run", "RunInput", "RunOutput", "Replica", "User", "Token",
           "Job", "AuditEvent", "LIFECYCLE", "ROLES", "JOB_STATES", "utcnow"]

LIFECYCLE = ("draft", "active", "deprecated", "archived", "deleted")
ROLES = ("reader", "writer", "admin")
JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Dataset(Base):
    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    kind: Mapped[str | None] = mapped_column(String(32))
    owner: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[Any]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    versions: Mapped[list[DatasetVersion]] = relationship(back_populates="dataset", order_by="DatasetVersion.number")


class DatasetVersion(Base):
    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "number"), UniqueConstraint("dataset_id", "version"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(64))  # content id (digest prefix)
    digest: Mapped[str] = mapped_column(String(80))
    manifest_uri: Mapped[str] = mapped_column(Text)
    samples: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    schema_version: Mapped[int] = mapped_column(Integer)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rejects: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="active")
    state_changed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    purged_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by_run: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    dataset: Mapped[Dataset] = relationship(back_populates="versions")


class Run(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # a UUID (OpenLineage runId)
    kind: Mapped[str] = mapped_column(String(16))  # ingest | pipeline | sync | job | synth | train
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="running")  # queued running succeeded failed
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    code_version: Mapped[str | None] = mapped_column(String(64))
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    logs_uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    submitted_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class RunInput(Base):
    __tablename__ = "run_inputs"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), primary_key=True, index=True)


class RunOutput(Base):
    __tablename__ = "run_outputs"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), primary_key=True, index=True)


class Replica(Base):
    __tablename__ = "replicas"
    __table_args__ = (UniqueConstraint("version_id", "store_uri"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("dataset_versions.id"), index=True)
    store_uri: Mapped[str] = mapped_column(Text)
    manifest_uri: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))  # verified
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    verified_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="default")
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    user: Mapped[User] = relationship()


class Job(Base):
    """The durable side of a submitted run: ``state`` follows the run's status; a worker owns a
    running job while ``lease_until`` is in the future and renews it with heartbeats."""

    __tablename__ = "jobs"
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), primary_key=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # lake, roots: what the job may touch
    submitted_by: Mapped[str | None] = mapped_column(String(100), nullable=True)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=2)
    lease_owner: Mapped[str | None] = mapped_column(String(200), nullable=True)
    lease_until: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(100), nullable=True)
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str] = mapped_column(String(300))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


Index("ix_runs_status", Run.status)
Index("ix_jobs_state_created", Job.state, Job.created_at)
