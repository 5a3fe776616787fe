"""The web registry: server-rendered pages (Jinja2, inline SVG charts, a little CSS, no CDN).

Pages: datasets (search, filters) -> dataset (versions, runs) -> version (statistics charts,
filter funnel and reject reasons of the run that made it, sample browser with annotations
drawn, lineage graph, lifecycle actions, replicas) -> sample; runs and run pages; a form to
submit a job; a login form that keeps an API token in a cookie. Roles are the API's: every
page and form is in the same ``ROUTE_ROLES`` table the role sweep test walks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from dashboards.charts import bar_chart, funnel_chart, histogram_chart, human_bytes
from registry.types import RegistryError
from registry.web.views import lineage_svg, sample_view

__all__ = ["mount_web"]

HERE = Path(__file__).parent
PAGE_SIZE = 12
#: sample tiles on a version page: thumbnails, and at most this many media of a long document
THUMB, TILE_MEDIA = 320, 2
#: the sample page shows a long document this many pages at a time (thumbnails, full size on click)
MEDIA_PER_PAGE, PAGE_THUMB, RECORD_CHARS = 10, 900, 20_000
#: the rejects browser: rows per page and their thumbnails; the end of a job's log on its run page
REJECTS_PAGE, REJECT_THUMB, LOG_TAIL = 50, 96, 64 * 1024


def _duration(start: str | None, end: str | None) -> str | None:
    """``1 h 02 min``, ``3 min 05 s``, ``4.2 s`` between two ISO times (end: now)."""
    import datetime as dt

    if not start:
        return None
    t0 = dt.datetime.fromisoformat(start.replace("Z", "+00:00"))
    t1 = dt.datetime.fromisoformat(end.replace("Z", "+00:00")) if end else dt.datetime.now(dt.UTC)
    s = max(0.0, (t1 - t0).total_seconds())
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"
def _default_pipeline() -> str:
    """The shipped example spec, shown in the job form."""
    import pipelines

    path = Path(pipelines.__file__).parent / "specs" / "clean-captions.yaml"
    return path.read_text() if path.exists() else ""


def _version_url(ref: str) -> str:
    name, _, number = ref.partition("@")
    return f"/datasets/{quote(name)}/{quote(number)}"


def _run_url(run_id: str) -> str:
    return f"/runs/{quote(run_id)}"


def funnel_from_counts(counts: dict[str, Any]) -> list[tuple[str, float]]:
    """inputs -> removed per reason -> kept, from a run's counts (ingest or pipeline)."""
    steps: list[tuple[str, float]] = []
    inputs = counts.get("inputs", counts.get("samples_in"))  # ingest runs count inputs, pipelines samples_in
    if isinstance(inputs, (int, float)):
        steps.append(("inputs", inputs))
    for group in ("rejected", "filtered"):
        for reason, n in sorted((counts.get(group) or {}).items(), key=lambda kv: -kv[1]):
            steps.append((f"{group}: {reason}", n))
    if isinstance(counts.get("duplicates"), (int, float)) and counts["duplicates"]:
        steps.append(("duplicates", counts["duplicates"]))
    kept = counts.get("kept", counts.get("ingested"))
    if kept is not None:
        steps.append(("kept", kept))
    return steps


def mount_web(app: FastAPI, *, route_roles: dict[tuple[str, str], str], require: Callable[[str], Any]) -> None:
    reg = app.state.registry
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(version_url=_version_url, run_url=_run_url, human_bytes=human_bytes, quote=quote,
                                 default_pipeline=_default_pipeline())
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    router = APIRouter()

    def page(method: str, path: str, role: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
            route_roles[(method, path)] = role
            router.add_api_route(path, fn, methods=[method], dependencies=[Depends(require(role))],
                                 response_class=HTMLResponse, include_in_schema=False)
            return fn

        return deco

    def render(request: Request, name: str, http_status: int = 200, **ctx: Any) -> HTMLResponse:
        from registry.api import principal

        who = principal(request)
        return templates.TemplateResponse(request, name, {"who": who, **ctx}, status_code=http_status)

    @page("GET", "/", "read")
    def home() -> Response:
        return RedirectResponse("/datasets", status_code=303)

    @page("GET", "/datasets", "read")
    def datasets(request: Request, q: str = "", kind: str = "", state: str = "", tag: str = "") -> HTMLResponse:
        rows = reg.list_datasets(q=q or None, kind=kind or None, state=state or None, tag=tag or None)
        all_rows = reg.list_datasets()
        kinds = sorted({d.kind for d in all_rows if d.kind})
        tags = sorted({t for d in all_rows for t in d.tags})
        return render(request, "datasets.html", rows=rows, q=q, kind=kind, state=state, tag=tag, kinds=kinds,
                      tags=tags, states=("active", "deprecated", "archived"))

    @page("GET", "/datasets/{name}", "read")
    def dataset(request: Request, name: str) -> HTMLResponse:
        return render(request, "dataset.html", d=reg.get_dataset(name), versions=list(reversed(reg.list_versions(name))),
                      runs=reg.list_runs(dataset=name, limit=20))

    @page("GET", "/compare/{name}", "read")
    def compare(request: Request, name: str, a: str, b: str) -> HTMLResponse:
        from datalake.diff import diff_versions

        d = diff_versions(app.state.versions.get(f"{name}@{a}"), app.state.versions.get(f"{name}@{b}"), examples=20)
        return render(request, "diff.html", dataset=name, a=a, b=b, d=d)

    @page("GET", "/datasets/{name}/{number}", "read")
    def version(request: Request, name: str, number: str, page: int = 0, msg: str = "", err: str = "") -> HTMLResponse:
        page_ = max(0, page)
        info = reg.get_version(f"{name}@{number}")
        st = info.stats or {}
        run = reg.get_run(info.created_by_run) if info.created_by_run else None
        charts = [
            bar_chart(list(st.get("kinds", {})), list(st.get("kinds", {}).values()), "samples per kind", chart_id="chart-kinds"),
            histogram_chart(st.get("width"), "media width (px)", chart_id="chart-width"),
            histogram_chart(st.get("height"), "media height (px)", chart_id="chart-height"),
            histogram_chart(st.get("aspect"), "aspect ratio (w/h)", chart_id="chart-aspect"),
            histogram_chart(st.get("text_length"), "text length (characters)", chart_id="chart-text"),
            histogram_chart(st.get("media_size"), "media size", kind="bytes", chart_id="chart-bytes"),
        ]
        if st.get("documents"):  # long documents (PDFs): their own statistics
            charts += [histogram_chart(st.get("pages"), f"pages per document ({st['documents']} documents)",
                                       kind="count", chart_id="chart-pages"),
                       histogram_chart(st.get("page_tokens"), "tokens per page (estimate)", chart_id="chart-page-tokens")]
        if st.get("ocr_pages"):
            charts.append(histogram_chart(st.get("ocr_confidence"), f"OCR confidence ({st['ocr_pages']} OCRed pages)",
                                          chart_id="chart-ocr-confidence"))
        if st.get("videos"):  # videos: durations, shots per video, frame rates, resolutions
            charts.append(histogram_chart(st.get("video_duration"), f"video duration (s; {st['videos']} videos)",
                                          kind="count", chart_id="chart-video-duration"))
            if sum((st.get("video_shots") or {}).get("counts") or ()):
                charts.append(histogram_chart(st.get("video_shots"), "shots per video", kind="count",
                                              chart_id="chart-video-shots"))
            for key, title, cid in (("video_fps", "frames per second", "chart-video-fps"),
                                    ("video_resolution", "video resolution", "chart-video-resolution")):
                top = sorted((st.get(key) or {}).items(), key=lambda kv: -kv[1])[:12]
                charts.append(bar_chart([k for k, _ in top], [v for _, v in top], title, chart_id=cid,
                                        horizontal=True))
        dropped = st.get("parts_dropped") or {}
        if dropped:  # what filters removed from documents they kept (text nodes, images), by reason
            top = sorted(dropped.items(), key=lambda kv: -kv[1])
            charts.append(bar_chart([k for k, _ in top], [v for _, v in top], "parts removed from kept documents",
                                    chart_id="chart-parts-dropped", horizontal=True))
        funnel = funnel_from_counts(run.counts) if run else []
        if not funnel and info.rejects:
            funnel = [("inputs", info.samples + info.rejects["count"])] + \
                     [(f"rejected: {r}", n) for r, n in info.rejects["reasons"].items()] + [("kept", info.samples)]
        if funnel:
            charts.append(funnel_chart(funnel, "filter funnel of the run that made it", chart_id="chart-funnel"))
        samples, total = [], info.samples
        if not info.purged:
            v = app.state.versions.get(info.ref)
            for i in range(page_ * PAGE_SIZE, min(total, (page_ + 1) * PAGE_SIZE)):
                rec = v.get(i).to_json()
                samples.append({"index": i, **sample_view(
                    rec, lambda m, i=i: f"/api/v1/versions/{info.ref}/samples/{i}/media/{quote(m)}", thumb=THUMB,
                    media_range=(0, TILE_MEDIA))})
        graph = reg.lineage(info.ref, "both")
        from registry.service import ALLOWED_TRANSITIONS

        return render(request, "version.html", v=info, run=run, charts=charts, samples=samples, page=page_,
                      pages=max(1, -(-total // PAGE_SIZE)), lineage=lineage_svg(graph, _version_url, _run_url),
                      replicas=reg.list_replicas(info.ref), next_states=ALLOWED_TRANSITIONS[info.state],
                      msg=msg, err=err)

    @page("GET", "/datasets/{name}/{number}/samples/{index}", "read")
    def sample(request: Request, name: str, number: str, index: int, from_: int = Query(0, alias="from")) -> HTMLResponse:
        info = reg.get_version(f"{name}@{number}")
        v = app.state.versions.get(info.ref)
        if not 0 <= index < len(v):
            raise HTTPException(404, f"{info.ref} has {len(v)} samples; no sample {index}")
        rec = v.get(index).to_json()
        start = max(0, min(from_, max(0, len(rec.get("media", [])) - 1)))
        view = sample_view(rec, lambda m: f"/api/v1/versions/{info.ref}/samples/{index}/media/{quote(m)}",
                           thumb=PAGE_THUMB if len(rec.get("media", [])) > MEDIA_PER_PAGE else None,
                           media_range=(start, start + MEDIA_PER_PAGE))
        shown = {a for a, m in enumerate(view["media"]) if m["shown"]}
        view["annotations"] = [{**a, "n": j} for j, a in enumerate(view["annotations"]) if a.get("media") in shown]
        record_text = json.dumps(rec, indent=1)
        if len(record_text) > RECORD_CHARS:
            record_text = record_text[:RECORD_CHARS] + f"\n... ({len(record_text) - RECORD_CHARS} more characters)"
        return render(request, "sample.html", v=info, s={"index": index, **view}, record=record_text,
                      total=len(v), media_from=start, media_per_page=MEDIA_PER_PAGE, n_media=len(rec.get("media", [])))

    @page("POST", "/datasets/{name}/{number}/lifecycle", "admin")
    def lifecycle(name: str, number: str, state: str = Form(...)) -> Response:
        ref = f"{name}@{number}"
        try:
            reg.transition(ref, state)
        except RegistryError as exc:
            return RedirectResponse(f"{_version_url(ref)}?err={quote(str(exc))}", status_code=303)
        return RedirectResponse(f"{_version_url(ref)}?msg={quote(f'now {state}')}", status_code=303)

    @page("POST", "/datasets/{name}/{number}/sync", "writer")
    def sync(name: str, number: str, target: str = Form(...)) -> Response:
        ref = f"{name}@{number}"
        try:
            app.state.inside_roots(target, "sync target")
            rep = reg.sync(ref, target)
        except RegistryError as exc:
            return RedirectResponse(f"{_version_url(ref)}?err={quote(str(exc))}", status_code=303)
        except (ValueError, OSError) as exc:
            return RedirectResponse(f"{_version_url(ref)}?err={quote(f'sync failed, no replica recorded: {exc}')}",
                                    status_code=303)
        return RedirectResponse(f"{_version_url(ref)}?msg={quote(f'replica verified at {rep.store_uri}')}", status_code=303)

    @page("GET", "/runs", "read")
    def runs(request: Request, status: str = "", kind: str = "") -> HTMLResponse:
        return render(request, "runs.html", runs=reg.list_runs(status=status or None, kind=kind or None, limit=200),
                      status=status, kind=kind)

    @page("GET", "/runs/{run_id}", "read")
    def run(request: Request, run_id: str, msg: str = "", err: str = "") -> HTMLResponse:
        from registry.types import NotFound
        from registry.worker import read_log

        r = reg.get_run(run_id)
        funnel = funnel_from_counts(r.counts)
        try:
            job, log = app.state.jobs.queue.get(run_id), read_log(reg, run_id, LOG_TAIL)
        except NotFound:
            job, log = None, None
        return render(request, "run.html", r=r, job=job, log=log, duration=_duration(r.started_at, r.ended_at),
                      funnel=funnel_chart(funnel, "inputs, removed by reason, kept", chart_id="chart-funnel") if funnel else None,
                      spec=json.dumps(r.spec, indent=1), parameters=json.dumps(r.parameters, indent=1),
                      counts=json.dumps(r.counts, indent=1), msg=msg, err=err)

    def job_action(request: Request, run_id: str, act: Callable[[str, Any], tuple[str, str]]) -> Response:
        """Run ``act`` as the logged-in user; back to a run page with its message or the error."""
        from registry.api import principal

        try:
            target, note = act(run_id, principal(request))
        except RegistryError as exc:
            return RedirectResponse(f"{_run_url(run_id)}?err={quote(str(exc))}", status_code=303)
        return RedirectResponse(f"{_run_url(target)}?msg={quote(note)}", status_code=303)

    def _cancel(run_id: str, who: Any) -> tuple[str, str]:
        job = app.state.jobs.cancel(run_id, who.name, who.role)
        return run_id, "stop requested" if job.cancel_requested else job.state

    def _retry(run_id: str, who: Any) -> tuple[str, str]:
        return app.state.jobs.retry(run_id, who.name, who.role).id, f"retry of {run_id}"

    @page("POST", "/runs/{run_id}/cancel", "writer")
    def cancel_run(request: Request, run_id: str) -> Response:
        return job_action(request, run_id, _cancel)

    @page("POST", "/runs/{run_id}/retry", "writer")
    def retry_run(request: Request, run_id: str) -> Response:
        return job_action(request, run_id, _retry)

    @page("GET", "/audit", "admin")
    def audit(request: Request, actor: str = "", action: str = "", page: int = 0) -> HTMLResponse:
        page_ = max(0, page)
        rows = reg.audit(actor=actor or None, action=action or None, offset=page_ * 100, limit=100)
        return render(request, "audit.html", rows=rows, actor=actor, action=action, page=page_,
                      detail=lambda d: json.dumps(d, ensure_ascii=False))

    @page("GET", "/datasets/{name}/{number}/rejects", "read")
    def rejects(request: Request, name: str, number: str, stage: str = "", reason: str = "", page: int = 0,
                msg: str = "", err: str = "") -> HTMLResponse:
        from registry.rejects import key_positions, reject_rows

        info = reg.get_version(f"{name}@{number}")
        page_ = max(0, page)
        v = app.state.versions.get(info.ref)
        total, rows, facets = reject_rows(v, stage=stage or None, reason=reason or None, offset=page_ * REJECTS_PAGE,
                                          limit=REJECTS_PAGE)
        by_input: dict[str, set[str]] = {}
        for r in rows:
            if r.get("input") and r.get("key"):
                by_input.setdefault(r["input"], set()).add(r["key"])
        thumbs: dict[tuple[str, str], str] = {}
        for ref_in, keys in by_input.items():
            try:
                src = app.state.versions.get(ref_in)
            except (RegistryError, HTTPException):
                continue  # an input that is gone: rows without pictures
            for k, i in key_positions(src, keys).items():
                media = src.get(i).media
                if media and media[0].mime.startswith("image/"):
                    thumbs[(ref_in, k)] = (f"/api/v1/versions/{ref_in}/samples/{i}/media/{quote(media[0].name)}"
                                           f"?thumb={REJECT_THUMB}")
        items = [{**r, "thumb": thumbs.get((r.get("input") or "", r.get("key") or "")),
                  "readmittable": bool(r.get("input") and r.get("key") and r.get("outcome") in ("filtered", "duplicate"))}
                 for r in rows]
        return render(request, "rejects.html", v=info, items=items, total=total, facets=facets, stage=stage,
                      reason=reason, page=page_, pages=max(1, -(-total // REJECTS_PAGE)), thumb=REJECT_THUMB,
                      msg=msg, err=err)

    @page("POST", "/datasets/{name}/{number}/readmit", "writer")
    async def readmit(request: Request, name: str, number: str) -> Response:
        from registry.api import principal
        from registry.rejects import readmit as do_readmit

        form = await request.form()
        keys = [str(k) for k in form.getlist("key")]
        ref = f"{name}@{number}"
        back = f"{_version_url(ref)}/rejects"
        try:
            run = do_readmit(reg, ref, keys, actor=principal(request).name)
        except RegistryError as exc:
            return RedirectResponse(f"{back}?err={quote(str(exc))}", status_code=303)
        out = run.outputs[0] if run.outputs else ref
        return RedirectResponse(f"{_version_url(out)}?msg={quote(f're-admitted {len(keys)} sample(s) from {ref}')}",
                                status_code=303)

    @page("GET", "/jobs/new", "read")
    def job_form(request: Request) -> HTMLResponse:
        return render(request, "job_new.html", err="", form={})

    @page("POST", "/jobs/new", "writer")
    def job_submit(request: Request, source: str = Form(...), dataset: str = Form(...), kind: str = Form("caption"),
                   max_pixels: int = Form(100_000_000)) -> Response:
        from registry.api import principal

        spec = {"type": "ingest", "source": [s.strip() for s in source.splitlines() if s.strip()], "dataset": dataset,
                "kind": kind, "options": {"max_pixels": max_pixels}}
        try:
            run = app.state.jobs.submit(spec, submitted_by=principal(request).name)
        except RegistryError as exc:
            return render(request, "job_new.html", http_status=400, err=str(exc), form=spec)
        return RedirectResponse(_run_url(run.id), status_code=303)

    @page("POST", "/jobs/pipeline", "writer")
    def pipeline_submit(request: Request, spec: str = Form(...)) -> Response:
        from registry.api import principal

        try:
            run = app.state.jobs.submit({"type": "pipeline", "spec": spec}, submitted_by=principal(request).name)
        except RegistryError as exc:
            return render(request, "job_new.html", http_status=400, err=str(exc), form={}, pipeline_spec=spec)
        return RedirectResponse(_run_url(run.id), status_code=303)

    @page("GET", "/login", "open")
    def login_form(request: Request) -> HTMLResponse:
        return render(request, "login.html", err="")

    @page("POST", "/login", "open")
    def login(request: Request, token: str = Form(...)) -> Response:
        from registry.api import TOKEN_COOKIE

        if reg.authenticate(token.strip()) is None:
            return render(request, "login.html", http_status=401, err="That token is not valid (or was revoked).")
        resp = RedirectResponse("/datasets", status_code=303)
        resp.set_cookie(TOKEN_COOKIE, token.strip(), httponly=True, samesite="strict", max_age=30 * 86400)
        return resp

    @page("GET", "/logout", "open")
    def logout() -> Response:
        from registry.api import TOKEN_COOKIE

        resp = RedirectResponse("/datasets", status_code=303)
        resp.delete_cookie(TOKEN_COOKIE)
        return resp

    app.include_router(router)

    def error_response(request: Request, status: int, detail: Any, headers: dict[str, str] | None = None) -> Response:
        if request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", ""):
            from fastapi.responses import JSONResponse

            return JSONResponse({"detail": detail}, status_code=status, headers=headers)
        return render(request, "error.html", http_status=status, code=status, detail=detail)

    app.state.error_response = error_response
