"""What the registry hands out: plain frozen dataclasses, the same in-process and over HTTP.

The service returns them, the REST API serialises them with ``to_json``, and the HTTP client
rebuilds them with ``from_json`` -- so code written against the in-process registry runs
unchanged against a remote one.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["DatasetInfo", "VersionInfo", "RunInfo", "ReplicaInfo", "LineageGraph", "RegistryError", "NotFound",
           "Conflict", "Forbidden", "LifecycleError", "DeprecatedVersionWarning", "parse_registry_ref"]

T = TypeVar("T")


class RegistryError(ValueError):
    """A request the registry refuses; ``status`` is the HTTP status it maps to."""

    status = 400


class NotFound(RegistryError):
    status = 404


class Conflict(RegistryError):
    status = 409


class Forbidden(RegistryError):
    status = 403


class LifecycleError(RegistryError):
    """A version whose lifecycle state forbids what was asked (reading a deleted version...)."""

    status = 409


class DeprecatedVersionWarning(UserWarning):
    """Reading a deprecated version: it works, but a newer one should be used."""


_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def parse_registry_ref(ref: str) -> tuple[str, str]:
    """``name`` | ``name@latest`` | ``name@<number>`` | ``name@<version id or prefix>``
    -> (name, selector). All-digit selectors shorter than 12 characters are numbers."""
    if not isinstance(ref, str):
        raise RegistryError(f"a dataset reference is a string, got {type(ref).__name__}")
    name, _, sel = ref.partition("@")
    if not _NAME.match(name):
        raise RegistryError(f"invalid dataset name {name!r}: use 1-100 letters, digits, '.', '_' or '-'")
    sel = sel or "latest"
    if sel != "latest" and not (sel.isdigit() or re.fullmatch(r"[0-9a-f]{4,64}", sel)):
        raise RegistryError(f"invalid version {sel!r} in {ref!r}: use latest, a number or a version id")
    return name, sel


def _build(cls: type[T], d: dict[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    kind: str | None
    owner: str | None
    description: str
    tags: list[str]
    state: str
    created_at: str
    updated_at: str
    versions: int = 0
    latest: int | None = None
    samples: int | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DatasetInfo:
        return _build(cls, d)


@dataclass(frozen=True)
class VersionInfo:
    dataset: str
    number: int
    version: str
    digest: str
    manifest_uri: str
    samples: int
    bytes: int
    schema_version: int
    state: str
    created_at: str
    state_changed_at: str
    created_by_run: str | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    rejects: dict[str, Any] | None = None
    purged: bool = False

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.number}"

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ref": self.ref}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VersionInfo:
        return _build(cls, d)


@dataclass(frozen=True)
class RunInfo:
    id: str
    kind: str
    name: str
    status: str
    spec: dict[str, Any]
    parameters: dict[str, Any]
    counts: dict[str, Any]
    created_at: str
    started_at: str | None = None
    ended_at: str | None = None
    code_version: str | None = None
    error: str | None = None
    logs_uri: str | None = None
    submitted_by: str | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> RunInfo:
        return _build(cls, d)


@dataclass(frozen=True)
class ReplicaInfo:
    ref: str
    store_uri: str
    manifest_uri: str
    status: str
    bytes: int
    verified_at: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReplicaInfo:
        return _build(cls, d)


@dataclass(frozen=True)
class LineageGraph:
    """Nodes are versions (``v:<ref>``) and runs (``r:<run id>``); edges point downstream."""

    root: str
    nodes: list[dict[str, Any]]
    edges: list[tuple[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "nodes": self.nodes, "edges": [list(e) for e in self.edges]}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LineageGraph:
        return cls(d["root"], d["nodes"], [(a, b) for a, b in d["edges"]])

    def versions(self) -> list[str]:
        return [n["ref"] for n in self.nodes if n["type"] == "version"]
