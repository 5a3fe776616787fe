"""The stage contract: one record type (``datalake.Sample``), three kinds of stage.

* ``MapStage.map(sample) -> sample`` transforms (decode checks, normalisation ...);
* ``FilterStage.score(sample) -> scores`` then ``decide(scores) -> reason | None``: scores go
  into ``sample.meta["scores"][stage]`` and the rejects table, so a threshold can be changed and
  re-applied later without recomputing anything (scores never depend on thresholds);
* ``DedupeStage``: a global stage. ``signature(sample)`` runs next to the data; the runner
  groups signatures by ``band_records`` (LSH bands, exact hashes), ``verify`` checks candidate
  pairs, and union-find makes clusters; one sample per cluster is kept by ``rank``.

A stage never raises to drop a sample: it raises ``Reject(reason, detail)`` for a sample it
cannot process (that sample is accounted as rejected), and a filter returns its reason. New
stages register with ``@register`` and are picked up by the contract tests.

Every stage has a frozen ``Config`` dataclass; the spec's parameters are validated against it
up front, with errors that name the stage and the field.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar

from datalake.sample import Sample

__all__ = ["Stage", "MapStage", "FilterStage", "DedupeStage", "Reject", "register", "STAGES", "build_stage",
           "SpecError", "Record", "TASK_LAKE"]

#: the lake URI of the task running in this context (set by ``pipelines.execute``): where a stage
#: keeps what its workers share, e.g. the QA request cache
TASK_LAKE: ContextVar[str | None] = ContextVar("mmlake_task_lake", default=None)


class SpecError(ValueError):
    """A pipeline spec that cannot run; the message names the field and the fix."""


class Reject(Exception):
    """Raised by a stage for a sample it cannot process: the sample is accounted as rejected."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class Record:
    """One item's entry in a dedupe band: ``group`` is the bucket, ``role`` is ``key`` (stored)
    or ``probe`` (looks for keys within a radius), ``payload`` what ``verify`` needs."""

    group: str
    item: int
    role: str
    payload: Any


class Stage:
    name: ClassVar[str]
    kind: ClassVar[str]

    @dataclass(frozen=True)
    class Config:
        pass

    def __init__(self, config: Any) -> None:
        self.config = config

    def setup(self) -> None:
        """Load models or tables once per worker (not per sample)."""

    def describe(self) -> dict[str, Any]:
        return {self.name: dataclasses.asdict(self.config)}


class MapStage(Stage, ABC):
    kind = "map"

    @abstractmethod
    def map(self, sample: Sample) -> Sample: ...


class FilterStage(Stage, ABC):
    kind = "filter"

    @abstractmethod
    def score(self, sample: Sample) -> dict[str, Any]: ...

    @abstractmethod
    def decide(self, scores: dict[str, Any]) -> str | None:
        """The reason to drop a sample with these scores, or None to keep it."""

    def prune(self, sample: Sample, scores: dict[str, Any]) -> Sample:
        """The kept sample with failing *parts* removed (e.g. one bad image of a document);
        what was removed is recorded in ``meta["dropped_parts"]``. Default: unchanged."""
        return sample


class DedupeStage(Stage, ABC):
    kind = "dedupe"

    @abstractmethod
    def signature(self, sample: Sample) -> Any:
        """A small, picklable signature of the sample, or None to never dedupe it."""

    #: verify is an equivalence (exact hashes): a group can be linked as a star, not all pairs
    transitive: ClassVar[bool] = False

    def signatures(self, samples: list[Sample]) -> list[Any]:
        """Signatures of many samples (override to batch, e.g. MinHash bulk)."""
        return [self.signature(s) for s in samples]

    @abstractmethod
    def band_records(self, item: int, sig: Any) -> Iterable[Record]: ...

    @abstractmethod
    def verify(self, a: Any, b: Any) -> bool:
        """Are the two signatures duplicates (checked on every candidate pair)?"""

    def distance(self, a: Any, b: Any) -> float | None:
        """How far apart two signatures are (reported with each duplicate), where it means something."""
        return None

    @staticmethod
    def rank(sample: Sample) -> tuple[Any, ...]:
        """Which sample a cluster keeps: the smallest rank (default: largest image, then key)."""
        area = max((m.width * m.height for m in sample.media), default=0)
        return (-area, sample.key)


STAGES: dict[str, type[Stage]] = {}


def register(cls: type[Stage]) -> type[Stage]:
    if cls.name in STAGES:
        raise ValueError(f"stage {cls.name!r} registered twice")
    STAGES[cls.name] = cls
    return cls


def _coerce(stage: str, field: dataclasses.Field[Any], value: Any, hints: dict[str, Any]) -> Any:
    tp = hints[field.name]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    allowed = args if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) else (tp,)
    for t in allowed:
        t0 = typing.get_origin(t) or t
        if t0 is type(None) and value is None:
            return None
        if t0 is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if t0 is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t0 in (tuple, list) and isinstance(value, (list, tuple)):
            return tuple(value)
        if t0 in (str, bool) and isinstance(value, t0):
            return value
    raise SpecError(f"stage {stage}: {field.name} must be {tp}, got {value!r}")


def build_stage(name: str, params: dict[str, Any] | None) -> Stage:
    """A stage from its spec entry, its parameters checked against its ``Config``."""
    if name not in STAGES:  # a fresh process (or one that imported only some stages): register the built-ins
        import pipelines.stages  # noqa: F401
    if name not in STAGES:
        raise SpecError(f"unknown stage {name!r}; known stages: {sorted(STAGES)}")
    cls = STAGES[name]
    params = params or {}
    if not isinstance(params, dict):
        raise SpecError(f"stage {name}: parameters must be a mapping, got {params!r}")
    fields = {f.name: f for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(params) - set(fields))
    if unknown:
        raise SpecError(f"stage {name}: unknown parameter(s) {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(cls.Config)
    kw = {k: _coerce(name, fields[k], v, hints) for k, v in params.items()}
    try:
        config = cls.Config(**kw)
    except ValueError as exc:
        raise SpecError(f"stage {name}: {exc}") from None
    return cls(config)
