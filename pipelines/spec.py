"""Pipeline specs: a YAML job description, validated once, up front.

```yaml
name: clean-captions
input: raw-captions@latest        # a registered version, a list of them, or raw URIs (folders, tables, tars)
output: captions
runner: local                      # local | ray | spark
runner_options: {workers: 2}       # local: workers; ray: address, num_cpus; spark: master
partition_size: 256                # samples per task
against: [captions@3]              # optional: also remove duplicates of these versions (cross-version dedupe)
reuse_scores: captions@3           # optional: take filter scores from this earlier output instead of recomputing
ingest: {kind: interleaved}           # optional: how raw inputs are ingested (IngestConfig fields)
stages:
  - decode: {max_pixels: 100000000}
  - image_filter: {min_side: 64, max_aspect: 4.0}
  - text_filter: {min_words: 3}
  - dedupe_exact: {}
  - dedupe_image: {max_hamming: 6}
  - dedupe_text: {threshold: 0.8}
```

Every error names the field (``stages[2].text_filter: unknown parameter(s) ['min_word']``).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import pipelines.stages  # noqa: F401 - registers the built-in stages
from pipelines.stage import STAGES, DedupeStage, SpecError, Stage, build_stage

__all__ = ["PipelineSpec", "load_spec", "parse_spec", "RUNNERS", "STAGES"]

RUNNERS = ("local", "ray", "spark")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_FIELDS = {"name", "input", "output", "runner", "runner_options", "stages", "partition_size", "against",
           "reuse_scores", "description", "seed", "allow_empty", "source", "ingest"}


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    inputs: tuple[str, ...]
    output: str
    stages: tuple[tuple[str, dict[str, Any]], ...]
    runner: str = "local"
    runner_options: dict[str, Any] = field(default_factory=dict)
    partition_size: int = 256
    against: tuple[str, ...] = ()
    reuse_scores: str | None = None
    description: str = ""
    seed: int = 0
    #: commit a version even when every input was filtered, rejected or a duplicate
    allow_empty: bool = False
    #: how the inputs are read when they are collected rather than ingested (``pipelines.sources``)
    source: dict[str, Any] | None = None
    #: how raw inputs are ingested (``datalake.ingest.IngestConfig`` fields: kind, max_pixels, license ...)
    ingest: dict[str, Any] = field(default_factory=dict)

    def build(self) -> list[Stage]:
        return [build_stage(n, p) for n, p in self.stages]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "input": list(self.inputs), "output": self.output, "runner": self.runner,
                "runner_options": self.runner_options, "partition_size": self.partition_size,
                "against": list(self.against), "reuse_scores": self.reuse_scores, "seed": self.seed,
                "stages": [{n: p} for n, p in self.stages], **({"source": self.source} if self.source else {}),
                **({"ingest": self.ingest} if self.ingest else {})}

    def fingerprint(self, resolved_inputs: list[str]) -> str:
        """What determines the output: stages, inputs (by content id), partitioning, against."""
        doc = {"stages": [{n: p} for n, p in self.stages], "inputs": resolved_inputs, "output": self.output,
               "partition_size": self.partition_size, "against": list(self.against), "seed": self.seed}
        if self.source:
            doc["source"] = self.source
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def with_runner(self, runner: str | None) -> PipelineSpec:
        if runner is None:
            return self
        if runner not in RUNNERS:
            raise SpecError(f"runner {runner!r} is not one of {list(RUNNERS)}")
        from dataclasses import replace

        return replace(self, runner=runner, runner_options={} if runner != self.runner else self.runner_options)


def _strs(v: Any, what: str) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items or not all(isinstance(x, str) and x for x in items):
        raise SpecError(f"{what} must be a string or a non-empty list of strings, got {v!r}")
    return tuple(items)


#: what each runner's constructor takes (checked before anything runs)
RUNNER_OPTIONS = {"local": ("workers",), "ray": ("address", "num_cpus", "object_store_memory"),
                  "spark": ("master", "partitions")}


def parse_spec(doc: Any, where: str = "spec") -> PipelineSpec:
    if not isinstance(doc, dict):
        raise SpecError(f"{where}: a pipeline spec is a mapping with name, input, output and stages")
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {unknown}; known: {sorted(_FIELDS)}")
    for req in ("name", "input", "output", "stages"):
        if req not in doc:
            raise SpecError(f"{where}: field '{req}' is required")
    name, output = doc["name"], doc["output"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise SpecError(f"{where}: name {name!r} must be 1-100 letters, digits, '.', '_' or '-'")
    if not isinstance(output, str) or not _NAME.match(output):
        raise SpecError(f"{where}: output {output!r} must be a dataset name (letters, digits, '.', '_' or '-')")
    runner = doc.get("runner", "local")
    if runner not in RUNNERS:
        raise SpecError(f"{where}: runner {runner!r} is not one of {list(RUNNERS)}")
    opts = doc.get("runner_options") or {}
    if not isinstance(opts, dict):
        raise SpecError(f"{where}: runner_options must be a mapping")
    unknown = sorted(set(opts) - set(RUNNER_OPTIONS[runner]))
    if unknown:
        import difflib

        hints = [f"{u!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, RUNNER_OPTIONS[runner], 1))
                 else repr(u) for u in unknown]
        raise SpecError(f"{where}: runner_options {', '.join(hints)} not known to the {runner} runner; "
                        f"it takes {list(RUNNER_OPTIONS[runner])}")
    psize = doc.get("partition_size", 256)
    if not isinstance(psize, int) or isinstance(psize, bool) or psize < 1:
        raise SpecError(f"{where}: partition_size must be a positive integer, got {psize!r}")
    raw_stages = doc["stages"]
    if not isinstance(raw_stages, list) or not raw_stages:
        raise SpecError(f"{where}: stages must be a non-empty list like [{{decode: {{}}}}, {{text_filter: {{min_words: 3}}}}]")
    stages: list[tuple[str, dict[str, Any]]] = []
    for i, entry in enumerate(raw_stages):
        if isinstance(entry, str):
            entry = {entry: {}}
        if not isinstance(entry, dict) or len(entry) != 1:
            raise SpecError(f"{where}: stages[{i}] must be one 'stage_name: {{params}}' mapping, got {entry!r}")
        (sname, params), = entry.items()
        try:
            build_stage(sname, params or {})
        except SpecError as exc:
            raise SpecError(f"{where}: stages[{i}].{exc}") from None
        stages.append((sname, dict(params or {})))
    names = [n for n, _ in stages]
    if len(set(names)) != len(names):
        raise SpecError(f"{where}: a stage appears twice in {names}; give it once")
    against = _strs(doc["against"], f"{where}: against") if doc.get("against") else ()
    if against and not any(issubclass(type(build_stage(n, p)), DedupeStage) for n, p in stages):
        raise SpecError(f"{where}: 'against' needs at least one dedupe stage")
    reuse = doc.get("reuse_scores")
    if reuse is not None and not isinstance(reuse, str):
        raise SpecError(f"{where}: reuse_scores must be a version reference")
    seed = doc.get("seed", 0)
    if not isinstance(seed, int):
        raise SpecError(f"{where}: seed must be an integer")
    allow_empty = doc.get("allow_empty", False)
    if not isinstance(allow_empty, bool):
        raise SpecError(f"{where}: allow_empty must be true or false")
    source = None
    if doc.get("source") is not None:
        from pipelines.sources import parse_source

        source = parse_source(doc["source"], where)
        if against or reuse:
            raise SpecError(f"{where}: a collected source takes no 'against' or 'reuse_scores'")
    ingest = doc.get("ingest") or {}
    if not isinstance(ingest, dict):
        raise SpecError(f"{where}: ingest must be a mapping of ingest options, e.g. {{kind: interleaved}}")
    if ingest:
        import dataclasses

        from datalake.ingest import IngestConfig

        known = {f.name for f in dataclasses.fields(IngestConfig)} - {"dataset"}
        bad = sorted(set(ingest) - known)
        if bad:
            raise SpecError(f"{where}: ingest: unknown option(s) {bad}; known: {sorted(known)}")
        try:
            IngestConfig(dataset="check", **ingest)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{where}: ingest: {exc}") from None
    return PipelineSpec(name=name, inputs=_strs(doc["input"], f"{where}: input"), output=output,
                        stages=tuple(stages), runner=runner, runner_options=dict(opts), partition_size=psize,
                        against=against, reuse_scores=reuse, description=str(doc.get("description", "")), seed=seed,
                        allow_empty=allow_empty, source=source, ingest=dict(ingest))


def load_spec(path: str | Path) -> PipelineSpec:
    p = Path(path)
    if not p.is_file():
        raise SpecError(f"spec file {p} does not exist")
    try:
        doc = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{p}: not valid YAML: {exc}") from None
    return parse_spec(doc, str(p))
