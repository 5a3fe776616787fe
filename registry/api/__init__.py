"""The registry's REST API (FastAPI; OpenAPI at ``/openapi.json``, docs at ``/docs``).

Every route declares the role it needs -- ``read``, ``writer`` or ``admin`` -- in one table
(``ROUTE_ROLES``) that a test sweeps: each route is called as anonymous, reader, writer and
admin and the status codes are checked. Reads are open or token-only (``reads_open``); writes
always need a token (``Authorization: Bearer <token>``, or the web registry's cookie).

Bad input is a 4xx with a message that says what is wrong -- unknown dataset (404), malformed
body (422), a lifecycle move the rules forbid (409), a body over the size limit (413) -- and
never a partial write: each write is one transaction in the service.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from datalake import DatasetVersion
from datalake.shards import ShardError
from datalake.store import StoreError
from datalake.version import VersionError
from registry.auth import role_allows
from registry.jobs import JobRunner
from registry.service import Registry
from registry.types import Forbidden, RegistryError

__all__ = ["create_app", "ApiSettings", "ROUTE_ROLES", "Principal"]

#: (method, path) -> role needed: "open" (no check), "read", "writer", "admin"
ROUTE_ROLES: dict[tuple[str, str], str] = {}
TOKEN_COOKIE = "mmlake_token"


@dataclass(frozen=True)
class ApiSettings:
    reads_open: bool = True
    max_body_bytes: int = 1 << 20
    lake_uri: str | None = None
    #: where the registry and its jobs may read and write (``datalake.roots``); the lake is always
    #: one. None: no check (an embedded registry on one's own machine); ``mmlake registry serve``
    #: sets the lake, $MMLAKE_HOME and MMLAKE_REGISTRY_ROOTS
    roots: tuple[str, ...] | None = None
    #: jobs run at once by this process, seconds of a lease, and whether the worker polls for
    #: ever (``mmlake registry serve``) or only after submissions (an app made in a script)
    job_workers: int = 1
    job_lease_s: float = 30.0
    persistent_jobs: bool = False
    job_max_attempts: int = 2

    def all_roots(self) -> tuple[str, ...] | None:
        return None if self.roots is None else tuple(dict.fromkeys([*(r for r in [self.lake_uri] if r), *self.roots]))


@dataclass(frozen=True)
class Principal:
    name: str | None
    role: str | None


def token_from(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.cookies.get(TOKEN_COOKIE)


def principal(request: Request) -> Principal:
    reg: Registry = request.app.state.registry
    who = reg.authenticate(token_from(request))
    return Principal(*who) if who else Principal(None, None)


def require(role: str) -> Callable[[Request], Principal]:
    def dep(request: Request) -> Principal:
        p = principal(request)
        if role == "open":
            return p
        if role == "read":
            if p.role is None and not request.app.state.settings.reads_open:
                raise HTTPException(401, "this registry needs a token to read: send Authorization: Bearer <token>")
            return p
        if p.role is None:
            raise HTTPException(401, f"this action needs a {role} token: send Authorization: Bearer <token>")
        if not role_allows(p.role, role):
            raise HTTPException(403, f"{p.name} is a {p.role}; this action needs the {role} role")
        return p

    return dep


class Routes:
    """Registers routes with their role, so the table and the app never disagree."""

    def __init__(self, router: APIRouter, prefix: str) -> None:
        self.router, self.prefix = router, prefix

    def __call__(self, method: str, path: str, role: str, **kw: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            ROUTE_ROLES[(method, self.prefix + path)] = role
            self.router.add_api_route(path, fn, methods=[method], dependencies=[Depends(require(role))], **kw)
            return fn

        return deco


# -- request bodies ---------------------------------------------------------------------------

class DatasetIn(BaseModel):
    name: str = Field(max_length=100)
    kind: str | None = Field(default=None, max_length=32)
    owner: str | None = Field(default=None, max_length=100)
    description: str = Field(default="", max_length=20000)
    tags: list[str] = Field(default_factory=list, max_length=50)


class DatasetPatch(BaseModel):
    description: str | None = Field(default=None, max_length=20000)
    owner: str | None = Field(default=None, max_length=100)
    tags: list[str] | None = Field(default=None, max_length=50)


class StateIn(BaseModel):
    state: str


class VersionIn(BaseModel):
    manifest_uri: str = Field(max_length=2000)
    run_id: str | None = None
    state: str = "active"


class RunIn(BaseModel):
    kind: str
    name: str = Field(max_length=200)
    inputs: list[str] = Field(default_factory=list)
    spec: dict[str, Any] = Field(default_factory=dict)
    parameters: dict[str, Any] = Field(default_factory=dict)
    run_id: str | None = None
    status: str = "running"
    code_version: str | None = Field(default=None, max_length=200)
    logs_uri: str | None = Field(default=None, max_length=2000)


class FinishIn(BaseModel):
    status: str
    counts: dict[str, Any] = Field(default_factory=dict)
    outputs: list[str] = Field(default_factory=list)
    error: str | None = Field(default=None, max_length=20000)


class SyncIn(BaseModel):
    target: str = Field(max_length=2000)


class UserIn(BaseModel):
    name: str = Field(max_length=100)
    role: str


class TokenIn(BaseModel):
    label: str = Field(default="default", min_length=1, max_length=100)
    #: seconds until the token stops working (None: never); at most 10 years
    expires_in_s: int | None = Field(default=None, ge=60, le=10 * 365 * 86400)
    user: str | None = Field(default=None, max_length=100)  # admins may mint tokens for others


MAX_PAGE = 1000


def page_args(offset: int, limit: int) -> tuple[int, int]:
    """Bounds every list route shares: 0 <= offset, 1 <= limit <= MAX_PAGE."""
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise HTTPException(422, f"offset must be >= 0 and limit between 1 and {MAX_PAGE}")
    return offset, limit


def paged(rows: list[Any], request: Request, response: Response, offset: int, limit: int) -> list[Any]:
    """A page of a list route: the rows, and a ``Link: <...>; rel="next"`` header when the page is full."""
    if len(rows) >= limit:
        nxt = request.url.include_query_params(offset=offset + limit, limit=limit)
        response.headers["Link"] = f'<{nxt}>; rel="next"'
    return rows


# -- the app ------------------------------------------------------------------------------------

class _VersionCache:
    """Opened manifests (and their cached shard indexes), newest 32 kept."""

    def __init__(self, reg: Registry) -> None:
        self.reg = reg
        self.items: OrderedDict[str, DatasetVersion] = OrderedDict()

    def get(self, ref: str) -> DatasetVersion:
        info = self.reg.get_version(ref)
        if info.purged:
            raise HTTPException(410, f"{info.ref} was deleted and its data purged")
        key = info.manifest_uri
        if key not in self.items:
            self.items[key] = DatasetVersion.open(info.manifest_uri)
            if len(self.items) > 32:
                self.items.popitem(last=False)
        self.items.move_to_end(key)
        return self.items[key]


class ThumbnailCache:
    """Least-recently-used thumbnails, bounded by their total bytes."""

    def __init__(self, max_bytes: int) -> None:
        import threading
        from collections import OrderedDict

        self.max_bytes, self.bytes = max_bytes, 0
        self._items: OrderedDict[Any, tuple[bytes, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> tuple[bytes, str] | None:
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
            return hit

    def put(self, key: Any, value: tuple[bytes, str]) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = value
            self.bytes += len(value[0])
            while self.bytes > self.max_bytes and len(self._items) > 1:
                _, (b, _) = self._items.popitem(last=False)
                self.bytes -= len(b)


def make_thumbnail(data: bytes, mime: str, side: int) -> tuple[bytes, str]:
    """JPEG (PNG where the image has transparency) at most ``side`` px on its long side; other
    media come back unchanged."""
    import io

    from PIL import Image

    if not mime.startswith("image/"):
        return data, mime
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (side, side))
            alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
            im = im.convert("RGBA" if alpha else "RGB")
            im.thumbnail((side, side))
            buf = io.BytesIO()
            if alpha:
                im.save(buf, "PNG", optimize=True)
                return buf.getvalue(), "image/png"
            im.save(buf, "JPEG", quality=82)
            return buf.getvalue(), "image/jpeg"
    except Exception:  # noqa: BLE001 - an undecodable image is shown as it is
        return data, mime


def _local_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI 5 (vendored under ``registry/web/static/swagger``, Apache-2.0), served
    by the registry itself; FastAPI's default loads it from a CDN: a blank page offline."""
    from pathlib import Path

    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    here = Path(__file__).resolve().parents[1] / "web" / "static" / "swagger"
    app.mount("/docs/assets", StaticFiles(directory=str(here)), name="swagger-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="mmlake registry API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")


class _TooLarge(HTTPException):
    pass


class BodyLimit:
    """ASGI middleware: request bodies over ``limit`` bytes are refused with 413 -- by
    ``Content-Length`` up front, and by counting the bytes as they stream in (chunked uploads
    declare no length), before any route sees the body."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await JSONResponse({"detail": f"request body of {int(length)} bytes is over the limit of "
                                          f"{self.limit} bytes"}, status_code=413)(scope, receive, send)
            return
        seen = 0
        limit = self.limit

        async def counted() -> Any:
            nonlocal seen
            msg = await receive()
            if msg.get("type") == "http.request":
                seen += len(msg.get("body") or b"")
                if seen > limit:
                    raise _TooLarge(413, f"request body is over the limit of {limit} bytes")
            return msg

        await self.app(scope, counted, send)


def create_app(reg: Registry, settings: ApiSettings | None = None, *, with_web: bool = True) -> FastAPI:
    settings = settings or ApiSettings()
    app = FastAPI(title="mmlake registry", version="1", description="Datasets, versions, runs and lineage.",
                  docs_url=None, redoc_url=None)
    _local_docs(app)
    app.state.registry, app.state.settings = reg, settings
    app.state.versions = _VersionCache(reg)
    thumbs = ThumbnailCache(64 * 2**20)
    app.state.jobs = JobRunner(reg, settings.lake_uri, workers=settings.job_workers, roots=settings.all_roots(),
                               lease_s=settings.job_lease_s, persistent=settings.persistent_jobs,
                               max_attempts=settings.job_max_attempts)

    def inside_roots(uri: str, what: str) -> None:
        roots = settings.all_roots()
        if roots is None:
            return
        from datalake.roots import OutsideRoots, Roots

        try:
            Roots.of(roots).check(uri, what)
        except OutsideRoots as exc:
            raise Forbidden(str(exc)) from None

    app.state.inside_roots = inside_roots
    router = APIRouter(prefix="/api/v1")
    route = Routes(router, "/api/v1")

    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    from registry.metrics import RegistryMetrics

    metrics = app.state.metrics = RegistryMetrics(reg)
    app.add_middleware(lambda inner: metrics.middleware(inner))

    ROUTE_ROLES[("GET", "/metrics")] = "open"  # what Prometheus scrapes: counts, never data

    @app.get("/metrics", include_in_schema=False)
    def prometheus_metrics() -> Response:
        """Prometheus exposition: requests, latency, errors by route; runs and the pipelines' funnel."""
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        # where and what, never the payload back (a huge or secret body must not be echoed)
        errors = [{"loc": list(e.get("loc", ()))[:6], "msg": str(e.get("msg", ""))[:200], "type": e.get("type")}
                  for e in exc.errors()[:20]]
        return app.state.error_response(request, 422, errors)  # type: ignore[no-any-return]

    def json_error(_request: Request, status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"detail": detail}, status_code=status, headers=headers)

    app.state.error_response = json_error  # the web registry answers browsers with a page instead

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return app.state.error_response(request, exc.status_code, exc.detail, exc.headers)  # type: ignore[no-any-return]

    @app.exception_handler(RegistryError)
    async def registry_error(request: Request, exc: RegistryError) -> Response:
        return app.state.error_response(request, exc.status, str(exc))  # type: ignore[no-any-return]

    @app.exception_handler(VersionError)
    @app.exception_handler(ShardError)
    async def data_error(request: Request, exc: Exception) -> Response:
        return app.state.error_response(request, 422, str(exc))  # type: ignore[no-any-return]

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: Exception) -> Response:
        return app.state.error_response(request, 502, str(exc))  # type: ignore[no-any-return]

    def versions(ref: str) -> DatasetVersion:
        return app.state.versions.get(ref)  # type: ignore[no-any-return]

    # health
    @route("GET", "/health", "open")
    def health() -> dict[str, Any]:
        return {"ok": True, "reads_open": settings.reads_open}

    @route("GET", "/diff", "read")
    def diff(a: str, b: str, examples: int = 10) -> dict[str, Any]:
        """What changed from version ``a`` to ``b`` (``datalake.diff``): keys, kinds, distributions, rejects."""
        from datalake.diff import diff_versions

        return {**diff_versions(versions(a), versions(b), examples=max(0, min(examples, 1000))), "a": a, "b": b}

    # datasets
    @route("GET", "/datasets", "read")
    def list_datasets(request: Request, response: Response, q: str | None = None, kind: str | None = None,
                      state: str | None = None, tag: str | None = None, offset: int = 0,
                      limit: int = 500) -> list[dict[str, Any]]:
        offset, limit = page_args(offset, limit)
        rows = reg.list_datasets(q=q, kind=kind, state=state, tag=tag, limit=limit, offset=offset)
        return paged([d.to_json() for d in rows], request, response, offset, limit)

    @route("POST", "/datasets", "writer", status_code=201)
    def create_dataset(body: DatasetIn, who: Principal = Depends(principal)) -> dict[str, Any]:
        return reg.create_dataset(body.name, kind=body.kind, owner=body.owner or who.name,
                                  description=body.description, tags=body.tags, actor=who.name).to_json()

    @route("GET", "/datasets/{name}", "read")
    def get_dataset(name: str) -> dict[str, Any]:
        return reg.get_dataset(name).to_json()

    @route("PATCH", "/datasets/{name}", "writer")
    def patch_dataset(name: str, body: DatasetPatch, who: Principal = Depends(principal)) -> dict[str, Any]:
        return reg.update_dataset(name, description=body.description, owner=body.owner, tags=body.tags,
                                  actor=who.name).to_json()

    @route("POST", "/datasets/{name}/state", "admin")
    def dataset_state(name: str, body: StateIn, who: Principal = Depends(principal)) -> dict[str, Any]:
        return reg.update_dataset(name, state=body.state, actor=who.name).to_json()

    @route("GET", "/datasets/{name}/versions", "read")
    def dataset_versions(request: Request, response: Response, name: str, offset: int = 0,
                         limit: int = MAX_PAGE) -> list[dict[str, Any]]:
        offset, limit = page_args(offset, limit)
        return paged([v.to_json() for v in reg.list_versions(name, offset=offset, limit=limit)], request, response,
                     offset, limit)

    # versions
    @route("POST", "/versions", "writer", status_code=201)
    def register(body: VersionIn, who: Principal = Depends(principal)) -> dict[str, Any]:
        inside_roots(body.manifest_uri, "manifest")
        return reg.register_version(body.manifest_uri, run_id=body.run_id, state=body.state, actor=who.name).to_json()

    @route("GET", "/resolve", "read")
    def resolve(ref: str, for_read: bool = True) -> dict[str, Any]:
        import warnings

        from registry.types import DeprecatedVersionWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            info = reg.resolve(ref, for_read=for_read)
        # the record is process-wide: a ResourceWarning of another thread's garbage (an unclosed
        # socket) lands in it too, and was once sent to the client as a deprecation
        return {**info.to_json(), "warnings": [str(w.message) for w in caught
                                               if issubclass(w.category, DeprecatedVersionWarning)]}

    @route("GET", "/versions/{ref}", "read")
    def get_version(ref: str) -> dict[str, Any]:
        return reg.get_version(ref).to_json()

    @route("GET", "/versions/{ref}/stats", "read")
    def version_stats(ref: str) -> dict[str, Any]:
        v = reg.get_version(ref)
        return {"ref": v.ref, "stats": v.stats, "rejects": v.rejects}

    @route("GET", "/versions/{ref}/samples", "read")
    def samples(ref: str, offset: int = 0, limit: int = 20) -> dict[str, Any]:
        if offset < 0 or not 1 <= limit <= 200:
            raise HTTPException(422, "offset must be >= 0 and limit between 1 and 200")
        v = versions(ref)
        items = [v.get(i).to_json() for i in range(offset, min(len(v), offset + limit))]
        return {"ref": ref, "total": len(v), "offset": offset, "items": items}

    @route("GET", "/versions/{ref}/samples/{index}", "read")
    def sample(ref: str, index: int) -> dict[str, Any]:
        v = versions(ref)
        if not 0 <= index < len(v):
            raise HTTPException(404, f"{ref} has {len(v)} samples; no sample {index}")
        return v.get(index).to_json()

    @route("GET", "/versions/{ref}/samples/{index}/media/{name}", "read")
    def media(ref: str, index: int, name: str, thumb: int | None = None) -> Response:
        """The media bytes as stored, or with ``thumb=N`` an image shrunk to N px on its long
        side (16-1024), made on first request and kept in a bounded cache."""
        if thumb is not None:
            key = (ref, index, name, max(16, min(1024, thumb)))
            hit = thumbs.get(key)
            if hit is None:
                raw, mime = _media_bytes(ref, index, name)
                hit = make_thumbnail(raw, mime, key[3])
                thumbs.put(key, hit)
            return Response(hit[0], media_type=hit[1], headers={"Cache-Control": "public, max-age=86400"})
        raw, mime = _media_bytes(ref, index, name)
        return Response(raw, media_type=mime, headers={"Cache-Control": "public, max-age=86400"})

    def _media_bytes(ref: str, index: int, name: str) -> tuple[bytes, str]:
        v = versions(ref)
        if not 0 <= index < len(v):
            raise HTTPException(404, f"{ref} has {len(v)} samples; no sample {index}")
        j, k = v.locate(index)
        key, members = v.shard(j).read_members(k)
        record = json.loads(members["json"])
        mime = next((m["mime"] for m in record["media"] if m["name"] == name), None)
        if mime is None or name not in members:
            raise HTTPException(404, f"sample {key} has no media {name!r}")
        return members[name], mime

    @route("GET", "/versions/{ref}/rejects", "read")
    def rejects(ref: str, offset: int = 0, limit: int = 100, stage: str | None = None,
                reason: str | None = None) -> dict[str, Any]:
        """Rejected inputs of a version, filtered by ``stage`` and ``reason``, a page at a time."""
        offset, limit = page_args(offset, limit)
        from registry.rejects import reject_rows

        total, rows, facets = reject_rows(versions(ref), stage=stage, reason=reason, offset=offset, limit=limit)
        return {"ref": ref, "total": total, "offset": offset, "items": rows, "facets": facets}

    @route("GET", "/versions/{ref}/lineage", "read")
    def lineage(ref: str, direction: str = "both", depth: int | None = None) -> dict[str, Any]:
        return reg.lineage(ref, direction, depth).to_json()

    @route("POST", "/versions/{ref}/lifecycle", "admin")
    def lifecycle(ref: str, body: StateIn, who: Principal = Depends(principal)) -> dict[str, Any]:
        return reg.transition(ref, body.state, actor=who.name).to_json()

    @route("POST", "/versions/{ref}/sync", "writer")
    def sync(ref: str, body: SyncIn, who: Principal = Depends(principal)) -> dict[str, Any]:
        inside_roots(body.target, "sync target")
        try:
            return reg.sync(ref, body.target, submitted_by=who.name).to_json()
        except RegistryError:
            raise
        except (ValueError, OSError) as exc:
            raise HTTPException(422, f"sync failed, no replica recorded: {exc}") from None

    @route("GET", "/versions/{ref}/replicas", "read")
    def replicas(ref: str) -> list[dict[str, Any]]:
        return [r.to_json() for r in reg.list_replicas(ref)]

    # runs and jobs
    @route("GET", "/runs", "read")
    def runs(request: Request, response: Response, status: str | None = None, kind: str | None = None,
             dataset: str | None = None, offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        offset, limit = page_args(offset, limit)
        rows = reg.list_runs(status=status, kind=kind, dataset=dataset, limit=limit, offset=offset)
        return paged([r.to_json() for r in rows], request, response, offset, limit)

    @route("POST", "/runs", "writer", status_code=201)
    def start_run(body: RunIn, who: Principal = Depends(principal)) -> dict[str, Any]:
        return reg.start_run(body.kind, body.name, inputs=body.inputs, spec=body.spec, parameters=body.parameters,
                             run_id=body.run_id, status=body.status, submitted_by=who.name,
                             code_version=body.code_version, logs_uri=body.logs_uri).to_json()

    @route("GET", "/runs/{run_id}", "read")
    def get_run(run_id: str) -> dict[str, Any]:
        return reg.get_run(run_id).to_json()

    @route("POST", "/runs/{run_id}/running", "writer")
    def mark_running(run_id: str) -> dict[str, Any]:
        return reg.mark_running(run_id).to_json()

    @route("POST", "/runs/{run_id}/finish", "writer")
    def finish_run(run_id: str, body: FinishIn) -> dict[str, Any]:
        return reg.finish_run(run_id, body.status, counts=body.counts, outputs=body.outputs,
                              error=body.error).to_json()

    @route("POST", "/jobs", "writer", status_code=202)
    def submit_job(spec: dict[str, Any], who: Principal = Depends(principal)) -> dict[str, Any]:
        return app.state.jobs.submit(spec, submitted_by=who.name).to_json()  # type: ignore[no-any-return]

    @route("GET", "/jobs", "read")
    def list_jobs(request: Request, response: Response, state: str | None = None, offset: int = 0,
                  limit: int = 100) -> list[dict[str, Any]]:
        offset, limit = page_args(offset, limit)
        return paged([j.to_json() for j in app.state.jobs.queue.list(state=state, offset=offset, limit=limit)],
                     request, response, offset, limit)

    @route("GET", "/jobs/{run_id}", "read")
    def get_job(run_id: str) -> dict[str, Any]:
        return app.state.jobs.queue.get(run_id).to_json()  # type: ignore[no-any-return]

    @route("POST", "/jobs/{run_id}/cancel", "writer")
    def cancel_job(run_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        """Cancel a queued job, or stop a running one (within a heartbeat); its submitter or an admin."""
        return app.state.jobs.cancel(run_id, who.name, who.role).to_json()  # type: ignore[no-any-return]

    @route("POST", "/jobs/{run_id}/retry", "writer", status_code=202)
    def retry_job(run_id: str, who: Principal = Depends(principal)) -> dict[str, Any]:
        """Submit a finished job's spec again as a new run (``parameters.retry_of``)."""
        return app.state.jobs.retry(run_id, who.name, who.role).to_json()  # type: ignore[no-any-return]

    @route("GET", "/runs/{run_id}/logs", "read")
    def run_logs(run_id: str, tail: int = 65536) -> Response:
        """The end (``tail`` bytes, at most 1 MiB) of a job's log, as the registry stored it."""
        from registry.worker import read_log

        text = read_log(reg, run_id, max(1, min(tail, 1 << 20)))
        return Response(text, media_type="text/plain; charset=utf-8")

    # admin, tokens, audit
    @route("POST", "/users", "admin", status_code=201)
    def create_user(body: UserIn, who: Principal = Depends(principal)) -> dict[str, Any]:
        return {"name": body.name, "role": body.role, "token": reg.create_user(body.name, body.role, actor=who.name)}

    @route("GET", "/tokens", "writer")
    def list_tokens(who: Principal = Depends(principal), user: str | None = None) -> list[dict[str, Any]]:
        """Your tokens (an admin: anyone's, or everyone's without ``user``); never the secrets."""
        from registry.auth import list_tokens

        if who.role != "admin" and user not in (None, who.name):
            raise HTTPException(403, "only an admin may list another user's tokens")
        return list_tokens(reg, user if who.role == "admin" else who.name)

    @route("POST", "/tokens", "reader", status_code=201)
    def new_token(body: TokenIn, who: Principal = Depends(principal)) -> dict[str, Any]:
        """A new token for you (an admin: for ``user``), shown once; it may expire."""
        from registry.auth import create_token

        name = body.user or who.name
        if name != who.name and who.role != "admin":
            raise HTTPException(403, "only an admin may create a token for another user")
        token, info = create_token(reg, name, body.label, expires_in_s=body.expires_in_s, actor=who.name)
        return {**info, "token": token}

    @route("DELETE", "/tokens/{token_id}", "reader")
    def revoke(token_id: int, who: Principal = Depends(principal)) -> dict[str, Any]:
        """Revoke a token (yours; an admin: anyone's). It stops working at once."""
        from registry.auth import revoke_token

        return revoke_token(reg, token_id, actor=who.name, role=who.role)

    @route("GET", "/audit", "admin")
    def audit(request: Request, response: Response, actor: str | None = None, action: str | None = None,
              offset: int = 0, limit: int = 100) -> list[dict[str, Any]]:
        """Who changed what: registrations, lifecycle, datasets, users, tokens, jobs; newest first."""
        offset, limit = page_args(offset, limit)
        return paged(reg.audit(offset=offset, limit=limit, actor=actor, action=action), request, response,
                     offset, limit)

    @route("POST", "/purge", "admin")
    def purge(who: Principal = Depends(principal)) -> dict[str, Any]:
        return {"purged": reg.purge(actor=who.name)}

    app.include_router(router)
    if with_web:
        from registry.web import mount_web

        mount_web(app, route_roles=ROUTE_ROLES, require=require)
    return app

