"""The REST API: every route x role, the HTTP client's contract, 4xx for bad input, jobs."""

from __future__ import annotations

import json
import re
import time
import uuid
import warnings

import httpx
import pytest
from fastapi.testclient import TestClient

from registry.api import ROUTE_ROLES, ApiSettings, create_app
from registry.client import HttpClient
from registry.types import Conflict, DeprecatedVersionWarning, Forbidden, LifecycleError, NotFound, RegistryError

from .conftest import World, serve

RANK = {"anonymous": -1, "reader": 0, "writer": 1, "admin": 2}
NEEDED = {"open": -2, "read": 0, "reader": 0, "writer": 1, "admin": 2}


def all_routes(routes, prefix: str = ""):  # type: ignore[no-untyped-def]
    """Every (path, methods) of the app, through included routers."""
    for r in routes:
        if hasattr(r, "original_router"):
            yield from all_routes(r.original_router.routes, prefix + (r.include_context.prefix or ""))
        elif getattr(r, "methods", None):
            yield prefix + r.path, r.methods


def fill(path: str, run_id: str) -> str:
    values = {"name": "mix", "ref": "mix@1", "number": "1", "index": "0", "run_id": run_id, "token_id": "999999"}
    path = path.replace("/media/{name}", "/media/0.jpg")
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


@pytest.mark.parametrize("reads_open", [True, False])
def test_every_route_checks_its_role(world: World, reads_open: bool) -> None:
    app = create_app(world.reg, ApiSettings(reads_open=reads_open, lake_uri=world.lake.uri))
    client = TestClient(app)
    api_routes = {(m, path) for path, methods in all_routes(app.routes) if path not in
                  ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc") for m in methods if m != "HEAD"}
    assert len(api_routes) > 30
    assert api_routes == set(ROUTE_ROLES), "a route is missing from ROUTE_ROLES (or the table lists a dead one)"
    run_id = world.reg.list_runs()[0].id
    checked = 0
    for (method, path), role in sorted(ROUTE_ROLES.items()):
        needed = NEEDED[role] if not (role == "read" and reads_open) else -1  # "reader": a token, always
        for who, rank in RANK.items():
            headers = {"Authorization": f"Bearer {world.tokens[who]}"} if who != "anonymous" else {}
            r = client.request(method, fill(path, run_id), headers=headers, json={} if method != "GET" else None,
                               follow_redirects=False)
            if rank < needed:
                assert r.status_code == (401 if who == "anonymous" else 403), (method, path, who, r.status_code, r.text)
            else:
                assert r.status_code not in (401, 403), (method, path, who, r.status_code, r.text)
                assert r.status_code < 500, (method, path, who, r.status_code, r.text)
            checked += 1
    assert checked == 4 * len(ROUTE_ROLES)
    # nothing was changed by the sweep's empty bodies
    assert world.reg.get_version("mix@1").state == "active"


def test_http_client_has_the_service_contract(world: World) -> None:
    app = create_app(world.reg, ApiSettings(reads_open=False, lake_uri=world.lake.uri))
    with serve(app) as url:
        admin = HttpClient(url, world.tokens["admin"])
        writer = HttpClient(url, world.tokens["writer"])
        reader = HttpClient(url, world.tokens["reader"])
        assert [d.name for d in reader.list_datasets()] == ["clean", "mix", "raw", "shapes"]
        assert [d.name for d in reader.list_datasets(tag="boxes")] == ["mix"]
        assert reader.resolve("mix").ref == "mix@1" and reader.get_dataset("mix").owner == "ana"
        assert sorted(reader.lineage("mix@1", "up").versions()) == ["clean@1", "mix@1", "raw@1", "shapes@1"]
        assert reader.lineage("raw@1", "down", depth=1).versions() == ["clean@1", "raw@1"]
        v = reader.open_version("mix@1")
        assert len(v) == 16 and v.get(3).annotations
        # writes
        from datalake import write_version
        from synth.shapes import shape_samples

        new = write_version(world.lake, "mix", shape_samples(2, seed=99))
        run = writer.start_run("pipeline", "remote-run", inputs=["mix@1"], spec={"x": 1})
        done = writer.finish_run(run.id, "succeeded", counts={"kept": 2}, outputs=[new])
        assert done.outputs == ["mix@2"] and done.inputs == ["mix@1"]
        assert reader.get_run(run.id).status == "succeeded"
        assert writer.register_version(new.uri).number == 2  # idempotent
        with pytest.raises(Forbidden, match="needs the admin role"):
            writer.transition("mix@2", "deprecated")
        with pytest.raises(Forbidden, match="needs a writer token"):
            HttpClient(url).start_run("job", "x")
        with pytest.raises(Forbidden, match="needs a token to read"):
            HttpClient(url).list_datasets()
        assert admin.transition("mix@1", "deprecated").state == "deprecated"
        with pytest.warns(DeprecatedVersionWarning, match="mix@1 is deprecated"):
            reader.resolve("mix@1")
        with pytest.raises(LifecycleError, match="can move to"):
            admin.transition("mix@2", "deleted")
        with pytest.raises(NotFound, match="dataset 'nope' is not registered"):
            reader.resolve("nope")
        with pytest.raises(Conflict, match="already finished"):
            writer.finish_run(run.id, "failed")
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert reader.resolve("mix@latest").ref == "mix@2"


def test_bad_input_is_4xx_with_a_message_and_writes_nothing(world: World) -> None:
    app = create_app(world.reg, ApiSettings(lake_uri=world.lake.uri, max_body_bytes=4096))
    admin = {"Authorization": f"Bearer {world.tokens['admin']}"}
    with serve(app) as url, httpx.Client(base_url=url, headers=admin) as c:
        before = (len(world.reg.list_runs(limit=1000)), len(world.reg.list_datasets()))
        cases = [
            ("GET", "/api/v1/datasets/nope", None, 404, "not registered"),
            ("GET", "/api/v1/versions/mix@99", None, 404, "no such version"),
            ("GET", "/api/v1/versions/bad%20name@1", None, 400, "invalid dataset name"),
            ("POST", "/api/v1/datasets", {"name": "../etc", "description": "x"}, 400, "invalid dataset name"),
            ("POST", "/api/v1/datasets", {"name": "x", "tags": "notalist"}, 422, "tags"),
            ("POST", "/api/v1/versions", {"manifest_uri": "file:///nowhere/datasets/x/versions/ab.json"}, 400, "no manifest"),
            ("POST", "/api/v1/runs", {"kind": "teleport", "name": "x"}, 400, "run kind 'teleport'"),
            ("POST", "/api/v1/runs", {"kind": "job", "name": "x", "inputs": ["ghost@1"]}, 404, "ghost"),
            ("POST", f"/api/v1/runs/{uuid.uuid4()}/finish", {"status": "succeeded"}, 404, "does not exist"),
            ("POST", "/api/v1/versions/mix@1/lifecycle", {"state": "deleted"}, 409, "can move to deprecated"),
            ("POST", "/api/v1/versions/mix@1/lifecycle", {"state": "vanished"}, 400, "is not one of"),
            ("POST", "/api/v1/jobs", {"type": "ingest", "dataset": "x"}, 400, "'source'"),
            ("POST", "/api/v1/jobs", {"type": "ingest", "source": "/x", "dataset": "x", "options": {"bogus": 1}}, 400, "unknown ingest option"),
            ("POST", "/api/v1/jobs", {"type": "pipeline"}, 400, "a pipeline spec is a mapping"),
            ("POST", "/api/v1/jobs", {"type": "pipeline", "spec": {"name": "p", "input": "mix@1", "output": "o",
                                                                   "stages": [{"decode": {"pixels": 1}}]}}, 400,
             "unknown parameter(s) ['pixels']"),
            ("POST", "/api/v1/jobs", {"type": "pipeline", "spec": "name: [unclosed"}, 400, "not valid YAML"),
            ("POST", "/api/v1/users", {"name": "bob", "role": "overlord"}, 400, "role 'overlord'"),
            ("GET", "/api/v1/versions/mix@1/samples?limit=5000", None, 422, "limit"),
            ("GET", "/api/v1/versions/mix@1/samples/999", None, 404, "no sample 999"),
            ("GET", "/api/v1/versions/mix@1/samples/0/media/9.png", None, 404, "no media"),
            ("POST", "/api/v1/versions/mix@1/sync", {"target": "gs://elsewhere"}, 422, "unsupported store URI"),
        ]
        for method, path, body, status, words in cases:
            r = c.request(method, path, json=body)
            assert r.status_code == status, (path, r.status_code, r.text)
            assert words in json.dumps(r.json()), (path, r.text)
        r = c.post("/api/v1/datasets", content=b'{"name": "big", "description": "' + b"x" * 5000 + b'"}',
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "over the limit" in r.json()["detail"]
        r = c.post("/api/v1/runs", content=b"{not json", headers={"Content-Type": "application/json"})
        assert r.status_code == 422
        after = (len(world.reg.list_runs(limit=1000)), len(world.reg.list_datasets()))
        # only the failed sync recorded a (failed) run; no dataset, version or other run was written
        assert after[1] == before[1] and after[0] == before[0] + 1
        assert world.reg.list_runs(kind="sync")[0].status == "failed"
        assert c.get("/openapi.json").json()["info"]["title"] == "mmlake registry"


def test_samples_are_paged_and_media_is_original_bytes(world: World) -> None:
    app = create_app(world.reg, ApiSettings(lake_uri=world.lake.uri))
    with serve(app) as url, httpx.Client(base_url=url + "/api/v1") as c:
        page = c.get("/versions/mix@1/samples", params={"offset": 10, "limit": 4}).json()
        assert page["total"] == 16 and [s["key"] for s in page["items"]] == ["s00010", "s00011", "s00012", "s00013"]
        v = world.lake.open_version("mix")
        r = c.get("/versions/mix@1/samples/12/media/0.jpg")
        assert r.headers["content-type"] == "image/jpeg" and r.content == v.get(12).blobs["0.jpg"]
        assert c.get("/versions/mix@1/samples/12").json() == v.get(12).to_json()
        stats = c.get("/versions/raw@1/stats").json()
        assert stats["rejects"]["count"] == 6 and stats["stats"]["samples"] == 14
        rej = c.get("/versions/raw@1/rejects").json()
        assert rej["total"] == 6 and {r["reason"] for r in rej["items"]} >= {"truncated_image", "too_many_pixels"}


def test_submitted_job_runs_and_shows_up_as_a_run(world: World) -> None:
    app = create_app(world.reg, ApiSettings(lake_uri=world.lake.uri))
    with serve(app) as url:
        writer = HttpClient(url, world.tokens["writer"])
        run = writer.submit_job({"type": "ingest", "source": world.raw, "dataset": "raw-again",
                                 "options": {"shard_samples": 5}})
        assert run.status == "queued" and run.submitted_by == "writer-user"
        app.state.jobs.wait()
        done = writer.get_run(run.id)
        assert done.status == "succeeded", done.error
        assert done.outputs == ["raw-again@1"] and done.counts["kept"] == 14 and done.counts["inputs"] == 20
        bad = writer.submit_job({"type": "ingest", "source": str(world.tmp / "missing"), "dataset": "nothing"})
        app.state.jobs.wait()
        failed = writer.get_run(bad.id)
        assert failed.status == "failed" and "does not exist" in (failed.error or "")
        with pytest.raises(RegistryError, match="'dataset'"):
            writer.submit_job({"type": "ingest", "source": "/x"})


def test_reads_token_only_setting_from_environment(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmlake.settings import load_settings

    monkeypatch.setenv("MMLAKE_REGISTRY_READS", "token")
    assert load_settings().registry_reads == "token"
    monkeypatch.setenv("MMLAKE_REGISTRY_READS", "maybe")
    with pytest.raises(ValueError, match="registry_reads must be 'open' or 'token'"):
        load_settings()
    time.sleep(0)
