"""Submitting a pipeline to a Ray cluster through the Ray Jobs API.

``mmlake submit SPEC.yaml --ray-address http://head:8265`` uploads the spec as the job's
working directory and runs ``mmlake run SPEC --runner ray --json`` on the cluster, with the
lake, registry and S3 settings of the submitting machine passed as environment variables (so
the job writes to the same lake and records its run in the same registry: use shared
services, S3 and PostgreSQL or an HTTP registry, not local paths, unless the cluster is this
machine). The cluster's image must have mmlake installed (``docker-compose.yml`` builds one).
With ``wait``, it polls until the job ends and returns the run's JSON summary.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines.spec import load_spec
from pipelines.stage import SpecError

__all__ = ["submit"]

_FORWARD = ("MMLAKE_LAKE", "MMLAKE_REGISTRY", "MMLAKE_S3_ENDPOINT", "MMLAKE_S3_REGION", "MMLAKE_S3_RATE_LIMIT",
            "MMLAKE_S3_MAX_RETRIES", "MMLAKE_OPENLINEAGE", "MMLAKE_TOKEN", "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")


def submit(spec_path: str, ray_address: str, *, settings: dict[str, str], wait: bool = True,
           timeout_s: float = 3600, entrypoint: str = "mmlake") -> dict[str, Any]:
    from ray.job_submission import JobStatus, JobSubmissionClient

    spec = load_spec(spec_path)  # validated here, before anything is sent
    work = Path(tempfile.mkdtemp(prefix="mmlake-job-"))
    try:
        shutil.copy(spec_path, work / "spec.yaml")
        env = {k: os.environ[k] for k in _FORWARD if os.environ.get(k)}
        env.update({k: v for k, v in settings.items() if v})
        try:
            client = JobSubmissionClient(ray_address)
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            raise SpecError(f"cannot reach the Ray Jobs API at {ray_address}: {exc} (the head's dashboard port, "
                            "usually http://HEAD:8265)") from None
        for attempt in range(60):  # a head that just started has no job agent for a few seconds
            try:
                job_id = client.submit_job(entrypoint=f"{entrypoint} run spec.yaml --runner ray --json",
                                           runtime_env={"working_dir": str(work), "env_vars": env},
                                           metadata={"mmlake_pipeline": spec.name})
                break
            except RuntimeError as exc:
                if "No available agent" not in str(exc) or attempt == 59:
                    raise
                time.sleep(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out: dict[str, Any] = {"job_id": job_id, "ray_address": ray_address, "pipeline": spec.name}
    if not wait:
        return out
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get_job_status(job_id)
        if status in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"Ray job {job_id} still {status} after {timeout_s} s")
        time.sleep(1)
    logs = client.get_job_logs(job_id)
    out["status"] = str(status.value if hasattr(status, "value") else status)
    if status != JobStatus.SUCCEEDED:
        raise RuntimeError(f"Ray job {job_id} {out['status']}; last log lines:\n" + "\n".join(logs.splitlines()[-15:]))
    summary = next((json.loads(line) for line in reversed(logs.splitlines()) if line.startswith('{"run_id"')), None)
    out["summary"] = summary
    return out
