"""OpenLineage run events (START / COMPLETE / FAIL) for every registry run.

Events are built with the ``openlineage-python`` client's generated types (which carry the
spec's validators: UUID run ids, ISO 8601 times, URI producers), so Marquez or any other
OpenLineage consumer can read them. Inputs and outputs are datasets in the namespace of their
lake (``file:///data/lake``, ``s3://bucket/lake``) with a ``version`` facet holding the
content id. Targets (setting ``MMLAKE_OPENLINEAGE``): a JSON-lines file (path or
``file://``), or an ``http(s)://`` endpoint (POST, e.g. Marquez's ``/api/v1/lineage``).
Emitting never fails a run: an unreachable endpoint is logged and the run goes on.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.types import RunInfo

if TYPE_CHECKING:
    from registry.service import Registry

__all__ = ["make_emitter", "build_event", "Emitter", "PRODUCER"]

PRODUCER = "https://github.com/mmlake/mmlake/tree/main/registry"
log = logging.getLogger("mmlake.openlineage")


def _dataset(reg: Registry, ref: str, output: bool) -> Any:
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import dataset_version_dataset

    v = reg.get_version(ref)
    namespace = v.manifest_uri.rpartition("/datasets/")[0] or "mmlake"
    facets = {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=v.version,
                                                                           producer=PRODUCER)}
    cls = OutputDataset if output else InputDataset
    return cls(namespace=namespace, name=v.dataset, facets=facets)


def build_event(event_type: str, run: RunInfo, reg: Registry) -> dict[str, Any]:
    """The OpenLineage RunEvent for ``run`` as a JSON-ready dict."""
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import error_message_run, job_type_job
    from openlineage.client.serde import Serde

    run_facets: dict[str, Any] = {}
    if event_type == "FAIL" and run.error:
        run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
            message=run.error, programmingLanguage="python", producer=PRODUCER)
    job_facets = {"jobType": job_type_job.JobTypeJobFacet(processingType="BATCH", integration="MMLAKE",
                                                         jobType=run.kind.upper(), producer=PRODUCER)}
    when = run.ended_at if event_type in ("COMPLETE", "FAIL") else run.started_at
    event = RunEvent(
        eventType=RunState[event_type],
        eventTime=when or dt.datetime.now(dt.UTC).isoformat(),
        run=Run(runId=run.id, facets=run_facets),
        job=Job(namespace=reg.namespace, name=run.name, facets=job_facets),
        inputs=[_dataset(reg, r, False) for r in run.inputs],
        outputs=[_dataset(reg, r, True) for r in run.outputs] if event_type != "START" else [],
        producer=PRODUCER,
    )
    return Serde.to_dict(event)


class Emitter:
    """Sends events to nothing (``target=None``), a JSON-lines file or an HTTP endpoint."""

    def __init__(self, target: str | None) -> None:
        self.target = target
        self._lock = threading.Lock()

    def emit(self, event_type: str, run: RunInfo, reg: Registry) -> None:
        if not self.target:
            return
        try:
            event = build_event(event_type, run, reg)
            if self.target.startswith(("http://", "https://")):
                import httpx

                httpx.post(self.target, json=event, timeout=5).raise_for_status()
            else:
                path = Path(self.target[len("file://"):] if self.target.startswith("file://") else self.target)
                path.parent.mkdir(parents=True, exist_ok=True)
                with self._lock, open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(event) + "\n")
        except Exception as exc:  # noqa: BLE001 - lineage must never fail a run
            log.warning("could not emit OpenLineage %s event for run %s to %s: %s", event_type, run.id,
                        self.target, exc)


def make_emitter(target: str | None) -> Emitter:
    return Emitter(target)
