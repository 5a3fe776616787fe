"""Jobs: ingest runs recorded in the registry, whether started by the CLI or submitted to it.

``run_ingest`` is the one code path: record a run (START), ingest, register the output
version as made by the run with its counts (COMPLETE), or record the failure (FAIL). The CLI
calls it through whatever registry client it has (in-process or HTTP). Jobs posted to
``/api/v1/jobs`` or the web registry's form are queued by ``JobRunner`` as rows in the registry
database; a worker (``registry.worker``) claims each with a lease and calls it in a child
process, so a submitted job shows up as a run that goes queued -> running ->
succeeded/failed/cancelled, and survives a restart.

A job spec::

    {"type": "ingest", "source": "/data/raw" | ["s3://b/raw", ...], "dataset": "captions",
     "kind": "caption", "options": {"max_pixels": 100000000, "shard_samples": 1000}}

or a pipeline (the same YAML as ``mmlake run``, as a mapping or as YAML text)::

    {"type": "pipeline", "spec": {"name": ..., "input": ..., "output": ..., "stages": [...]}}
"""

from __future__ import annotations

import os
from typing import Any

from datalake import Lake
from datalake.ingest import IngestConfig, IngestResult, ingest
from registry.types import RegistryError, RunInfo

__all__ = ["run_ingest", "JobRunner", "validate_job"]

_INGEST_OPTIONS = {"max_pixels": int, "shard_samples": int, "workers": int, "image_column": str,
                   "caption_column": str, "key_column": str, "license": str, "out_of_view": str}


def ingest_config(dataset: str, kind: str = "caption", **options: Any) -> IngestConfig:
    unknown = sorted(set(options) - set(_INGEST_OPTIONS))
    if unknown:
        raise RegistryError(f"unknown ingest option(s) {unknown}; known: {sorted(_INGEST_OPTIONS)}")
    for k, v in options.items():
        if not isinstance(v, _INGEST_OPTIONS[k]) or isinstance(v, bool):
            raise RegistryError(f"ingest option {k} must be {_INGEST_OPTIONS[k].__name__}, got {v!r}")
    try:
        return IngestConfig(dataset=dataset, kind=kind, **options)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None


def validate_job(spec: Any) -> tuple[list[str], IngestConfig]:
    """Check a job spec up front; errors name the field."""
    if not isinstance(spec, dict):
        raise RegistryError("a job spec is a JSON object")
    kind = spec.get("type")
    if kind not in ("ingest", "pipeline"):
        raise RegistryError(f"job field 'type' must be 'ingest' or 'pipeline', got {kind!r}")
    if kind == "pipeline":
        raise RegistryError("internal: pipeline jobs are validated by validate_pipeline_job")
    unknown = sorted(set(spec) - {"type", "source", "dataset", "kind", "options", "name"})
    if unknown:
        raise RegistryError(f"unknown job field(s) {unknown}")
    src = spec.get("source")
    srcs = [src] if isinstance(src, str) else src
    if not srcs or not isinstance(srcs, list) or not all(isinstance(s, str) and s for s in srcs):
        raise RegistryError("job field 'source' must be a path/URI or a list of them")
    dataset = spec.get("dataset")
    if not isinstance(dataset, str):
        raise RegistryError("job field 'dataset' must be the output dataset's name")
    options = spec.get("options") or {}
    if not isinstance(options, dict):
        raise RegistryError("job field 'options' must be an object")
    return srcs, ingest_config(dataset, spec.get("kind") or "caption", **options)


def run_ingest(client: Any, lake: Lake, srcs: list[str], cfg: IngestConfig, *, run: RunInfo | None = None,
               submitted_by: str | None = None, progress: bool | None = None) -> tuple[RunInfo, IngestResult | None]:
    """Ingest ``srcs`` into ``lake`` as a run recorded through ``client`` (a ``Registry`` or an
    ``HttpClient``). Re-raises the ingest error after recording the failed run."""
    spec = {"type": "ingest", "source": srcs, "dataset": cfg.dataset, "kind": cfg.kind}
    params = {k: getattr(cfg, k) for k in _INGEST_OPTIONS}
    if run is None:
        run = client.start_run("ingest", f"ingest {cfg.dataset}", spec=spec, parameters=params,
                               submitted_by=submitted_by)
    else:
        run = client.mark_running(run.id)
    try:
        result = ingest(srcs, lake, cfg, progress=progress, created={"run_id": run.id})
    except Exception as exc:
        client.finish_run(run.id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    counts = {"inputs": result.inputs, "kept": result.ingested, "ingested": result.ingested,
              "rejected": result.rejected}
    return client.finish_run(run.id, "succeeded", counts=counts, outputs=[result.manifest]), result


def validate_pipeline_job(spec: dict[str, Any]) -> Any:
    """The ``PipelineSpec`` of a pipeline job; errors name the field."""
    import yaml

    from pipelines.spec import parse_spec
    from pipelines.stage import SpecError

    unknown = sorted(set(spec) - {"type", "spec"})
    if unknown:
        raise RegistryError(f"unknown job field(s) {unknown}; a pipeline job is {{type: pipeline, spec: ...}}")
    body = spec.get("spec")
    if isinstance(body, str):
        try:
            body = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise RegistryError(f"job field 'spec' is not valid YAML: {exc}") from None
    try:
        return parse_spec(body, "spec")
    except SpecError as exc:
        raise RegistryError(str(exc)) from None


class JobRunner:
    """Submits jobs to the registry's durable queue (``registry.worker``) and runs a worker for them.

    ``submit`` validates the spec up front (errors name the field; paths outside the roots are a
    403), then writes the queued run and its job row in one transaction and wakes the worker."""

    def __init__(self, reg: Any, lake_uri: str | None, workers: int = 1, roots: tuple[str, ...] | None = None,
                 *, lease_s: float = 30.0, persistent: bool = False, max_attempts: int = 2) -> None:
        from registry.worker import JobQueue, JobWorker

        self.reg, self.lake_uri, self.roots, self.max_attempts = reg, lake_uri, roots, max_attempts
        self.queue = JobQueue(reg)
        self.run_jobs = workers > 0  # 0: this process only queues (``mmlake registry worker`` runs them)
        self.worker = JobWorker(reg, slots=max(1, workers), lease_s=lease_s, persistent=persistent)

    def submit(self, spec: Any, submitted_by: str | None = None, *, retry_of: str | None = None,
               start_worker: bool = True) -> RunInfo:
        if not self.lake_uri:
            raise RegistryError("this registry has no lake configured to run jobs in (start it with --lake)")
        lake = self.lake_uri if "://" in self.lake_uri else os.path.abspath(self.lake_uri)
        config = {"lake": lake, "roots": list(self.roots) if self.roots is not None else None}
        extra = {"retry_of": retry_of} if retry_of else {}
        if isinstance(spec, dict) and spec.get("type") == "pipeline":
            pspec = validate_pipeline_job(spec)
            refs = [r for r in pspec.inputs if "://" not in r and not r.startswith((".", "/"))]
            self._inside_roots([r for r in pspec.inputs if r not in refs], "pipeline input")
            for ref in refs:
                self.reg.resolve(ref, for_read=True)  # unknown inputs fail now, not in the background
            run = self.queue.enqueue("pipeline", pspec.name, job_spec=spec, config=config, submitted_by=submitted_by,
                                     run_spec=pspec.to_json(), inputs=tuple(self.reg.resolve(r).ref for r in refs),
                                     parameters={"runner": pspec.runner, **pspec.runner_options, **extra},
                                     max_attempts=self.max_attempts)
        else:
            srcs, cfg = validate_job(spec)
            self._inside_roots(srcs, "ingest source")
            run = self.queue.enqueue("ingest", spec.get("name") or f"ingest {cfg.dataset}",
                                     job_spec={**spec, "source": srcs}, config=config, submitted_by=submitted_by,
                                     run_spec={**spec, "source": srcs}, parameters=extra or None,
                                     max_attempts=self.max_attempts)
        if start_worker and self.run_jobs:
            self.worker.start()
        return run

    def cancel(self, run_id: str, actor: str | None = None, role: str | None = "admin") -> Any:
        job = self.queue.cancel(run_id, actor, role)
        self.worker.start()  # a running job's worker sees the flag at its next heartbeat
        return job

    def retry(self, run_id: str, actor: str | None = None, role: str | None = "admin") -> RunInfo:
        """The finished job's spec again, checked against today's roots, as a new run."""
        job = self.queue.finished_job(run_id, actor, role)
        return self.submit(job.spec, submitted_by=actor if actor is not None else job.submitted_by, retry_of=run_id)

    def _inside_roots(self, uris: list[str], what: str) -> None:
        if self.roots is None:
            return
        from datalake.roots import OutsideRoots, Roots
        from registry.types import Forbidden

        for u in uris:
            try:
                Roots.of(self.roots).check(u, what)
            except OutsideRoots as exc:
                raise Forbidden(str(exc)) from None

    def start(self) -> None:
        """Start the worker (and so recover what a previous process left running)."""
        if self.run_jobs:
            self.worker.start()

    def close(self) -> None:
        self.worker.stop()

    def wait(self, timeout: float = 300.0) -> None:
        """Block until no job is queued or running (tests, shutdown)."""
        import time

        from sqlalchemy import func, select

        from registry.models import Job

        deadline = time.monotonic() + timeout
        while True:
            with self.reg.session(read=True) as s:
                pending = s.scalar(select(func.count()).select_from(Job).where(Job.state.in_(("queued", "running"))))
            if not pending and not self.worker.busy():
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{pending} job(s) still queued or running after {timeout} s")
            self.worker.start()
            time.sleep(0.05)
