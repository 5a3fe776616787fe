"""The registry client: the same calls in-process or over HTTP.

``connect()`` returns a ``Registry`` (the service itself, on a SQLite/PostgreSQL URL) or an
``HttpClient`` (on an ``http(s)://`` URL), chosen by ``MMLAKE_REGISTRY``; both have the
methods below with the same arguments and return types, so pipelines, the loader and the
dashboards never care where the registry is. HTTP errors come back as the same exceptions
(``NotFound``, ``Conflict``, ``LifecycleError`` ...) with the server's message.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from datalake import DatasetVersion
from registry.types import (
    Conflict,
    DatasetInfo,
    DeprecatedVersionWarning,
    Forbidden,
    LifecycleError,
    LineageGraph,
    NotFound,
    RegistryError,
    ReplicaInfo,
    RunInfo,
    VersionInfo,
)

__all__ = ["HttpClient", "connect"]


class HttpClient:
    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=timeout)

    def __repr__(self) -> str:
        return f"HttpClient({self.url!r})"

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach the registry at {self.url}: {exc}") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            if isinstance(detail, list):  # pydantic validation errors
                detail = "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
            cls = {401: Forbidden, 403: Forbidden, 404: NotFound, 409: Conflict}.get(r.status_code, RegistryError)
            if r.status_code == 409 and ("can move to" in str(detail) or "cannot be read" in str(detail)):
                cls = LifecycleError
            raise cls(f"{detail} (HTTP {r.status_code})")
        return r.json()

    # datasets
    def create_dataset(self, name: str, *, kind: str | None = None, owner: str | None = None,
                       description: str = "", tags: list[str] | tuple[str, ...] = ()) -> DatasetInfo:
        return DatasetInfo.from_json(self._call("POST", "/datasets", json={
            "name": name, "kind": kind, "owner": owner, "description": description, "tags": list(tags)}))

    def get_dataset(self, name: str) -> DatasetInfo:
        return DatasetInfo.from_json(self._call("GET", f"/datasets/{name}"))

    def list_datasets(self, q: str | None = None, kind: str | None = None, state: str | None = None,
                      tag: str | None = None) -> list[DatasetInfo]:
        params = {k: v for k, v in {"q": q, "kind": kind, "state": state, "tag": tag}.items() if v}
        return [DatasetInfo.from_json(d) for d in self._call("GET", "/datasets", params=params)]

    # versions
    def get_version(self, ref: str) -> VersionInfo:
        return VersionInfo.from_json(self._call("GET", f"/versions/{ref}"))

    def resolve(self, ref: str, *, for_read: bool = True) -> VersionInfo:
        d = self._call("GET", "/resolve", params={"ref": ref, "for_read": for_read})
        for w in d.get("warnings", []):
            warnings.warn(w, DeprecatedVersionWarning, stacklevel=2)
        return VersionInfo.from_json(d)

    def list_versions(self, name: str) -> list[VersionInfo]:
        return [VersionInfo.from_json(v) for v in self._call("GET", f"/datasets/{name}/versions")]

    def open_version(self, ref: str, *, for_read: bool = True) -> DatasetVersion:
        return DatasetVersion.open(self.resolve(ref, for_read=for_read).manifest_uri)

    def register_version(self, version: DatasetVersion | str, *, run_id: str | None = None,
                         state: str = "active") -> VersionInfo:
        uri = version.uri if isinstance(version, DatasetVersion) else version
        return VersionInfo.from_json(self._call("POST", "/versions", json={"manifest_uri": uri, "run_id": run_id,
                                                                           "state": state}))

    # runs
    def start_run(self, kind: str, name: str, *, inputs: list[str] | tuple[str, ...] = (),
                  spec: dict[str, Any] | None = None, parameters: dict[str, Any] | None = None,
                  status: str = "running", run_id: str | None = None, submitted_by: str | None = None,
                  code_version: str | None = None, logs_uri: str | None = None, **_ignored: Any) -> RunInfo:
        """``submitted_by`` is ignored: the server records the token's user. The code version is
        this process's (the server's would be wrong), sent with the logs URI."""
        from registry.service import _code_version

        return RunInfo.from_json(self._call("POST", "/runs", json={
            "kind": kind, "name": name, "inputs": list(inputs), "spec": spec or {}, "parameters": parameters or {},
            "status": status, "run_id": run_id, "code_version": code_version or _code_version(),
            "logs_uri": logs_uri}))

    def mark_running(self, run_id: str) -> RunInfo:
        return RunInfo.from_json(self._call("POST", f"/runs/{run_id}/running"))

    def finish_run(self, run_id: str, status: str, *, counts: dict[str, Any] | None = None,
                   outputs: list[Any] | tuple[Any, ...] = (), error: str | None = None) -> RunInfo:
        outs = [o.uri if isinstance(o, DatasetVersion) else o for o in outputs]
        return RunInfo.from_json(self._call("POST", f"/runs/{run_id}/finish", json={
            "status": status, "counts": counts or {}, "outputs": outs, "error": error}))

    def get_run(self, run_id: str) -> RunInfo:
        return RunInfo.from_json(self._call("GET", f"/runs/{run_id}"))

    def list_runs(self, *, status: str | None = None, kind: str | None = None, dataset: str | None = None,
                  limit: int = 100, offset: int = 0) -> list[RunInfo]:
        params = {k: v for k, v in {"status": status, "kind": kind, "dataset": dataset, "limit": limit,
                                    "offset": offset}.items() if v}
        return [RunInfo.from_json(r) for r in self._call("GET", "/runs", params=params)]

    # lineage, lifecycle, replicas
    def lineage(self, ref: str, direction: str = "both", depth: int | None = None) -> LineageGraph:
        params: dict[str, Any] = {"direction": direction}
        if depth is not None:
            params["depth"] = depth
        return LineageGraph.from_json(self._call("GET", f"/versions/{ref}/lineage", params=params))

    def transition(self, ref: str, to: str, **_ignored: Any) -> VersionInfo:
        return VersionInfo.from_json(self._call("POST", f"/versions/{ref}/lifecycle", json={"state": to}))

    def sync(self, ref: str, target: str, **_ignored: Any) -> ReplicaInfo:
        return ReplicaInfo.from_json(self._call("POST", f"/versions/{ref}/sync", json={"target": target}))

    def list_replicas(self, ref: str) -> list[ReplicaInfo]:
        return [ReplicaInfo.from_json(r) for r in self._call("GET", f"/versions/{ref}/replicas")]

    def purge(self) -> list[str]:
        return list(self._call("POST", "/purge")["purged"])

    def submit_job(self, spec: dict[str, Any], **_ignored: Any) -> RunInfo:
        return RunInfo.from_json(self._call("POST", "/jobs", json=spec))

    def list_jobs(self, *, state: str | None = None, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"state": state, "offset": offset, "limit": limit}.items() if v is not None}
        return list(self._call("GET", "/jobs", params=params))

    def get_job(self, run_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/jobs/{run_id}"))

    def cancel_job(self, run_id: str, **_ignored: Any) -> dict[str, Any]:
        return dict(self._call("POST", f"/jobs/{run_id}/cancel"))

    def retry_job(self, run_id: str, **_ignored: Any) -> RunInfo:
        return RunInfo.from_json(self._call("POST", f"/jobs/{run_id}/retry"))

    def run_log(self, run_id: str, tail: int = 65536) -> str:
        import httpx

        try:
            r = self._http.get(f"/runs/{run_id}/logs", params={"tail": tail})
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot reach the registry at {self.url}: {exc}") from None
        if r.status_code >= 400:
            self._call("GET", f"/runs/{run_id}/logs")  # raises the mapped error
        return r.text

    # tokens and audit
    def create_token(self, label: str = "default", *, expires_in_s: int | None = None,
                     user: str | None = None) -> dict[str, Any]:
        return dict(self._call("POST", "/tokens", json={"label": label, "expires_in_s": expires_in_s, "user": user}))

    def list_tokens(self, user: str | None = None) -> list[dict[str, Any]]:
        return list(self._call("GET", "/tokens", params={"user": user} if user else {}))

    def revoke_token(self, token_id: int) -> dict[str, Any]:
        return dict(self._call("DELETE", f"/tokens/{token_id}"))

    def audit(self, *, actor: str | None = None, action: str | None = None, offset: int = 0,
              limit: int = 100) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"actor": actor, "action": action, "offset": offset, "limit": limit}.items()
                  if v is not None}
        return list(self._call("GET", "/audit", params=params))


def connect(url: str | None = None, token: str | None = None) -> Any:
    """A registry client for ``url`` (default: ``MMLAKE_REGISTRY`` / the embedded SQLite)."""
    if url is None:
        from mmlake.settings import load_settings

        url = load_settings().registry
    if url.startswith(("http://", "https://")):
        return HttpClient(url, token or os.environ.get("MMLAKE_TOKEN"))
    from registry.service import Registry

    return Registry(url, lineage_target=os.environ.get("MMLAKE_OPENLINEAGE") or None)
