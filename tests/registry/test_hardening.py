"""Adversarial tests of the registry's API: no 5xx on any route for malformed bodies, wrong
types, unknown ids, huge and chunked payloads, and no partial write behind a 4xx."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, inspect, select, table

from registry.api import ROUTE_ROLES, ApiSettings, create_app

from .conftest import World


def _counts(world: World) -> dict[str, int]:
    eng = world.reg.engine
    names = [n for n in inspect(eng).get_table_names() if n != "alembic_version"]
    with eng.connect() as c:
        return {n: c.execute(select(func.count()).select_from(table(n))).scalar_one() for n in names}


def _fill(path: str, values: dict[str, str]) -> str:
    import re

    path = path.replace("/media/{name}", "/media/nope.jpg")
    return re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), "nope"), path)


def test_no_route_answers_5xx_or_writes_behind_a_4xx(world: World) -> None:
    app = create_app(world.reg, ApiSettings(reads_open=True, lake_uri=world.lake.uri))
    client = TestClient(app, raise_server_exceptions=False)
    admin = {"Authorization": f"Bearer {world.tokens['admin']}"}
    unknown = {"name": "no-such-dataset", "ref": "no-such-dataset@7", "number": "99", "index": "999999",
               "run_id": str(uuid.uuid4())}
    known = {"name": "mix", "ref": "mix@1", "number": "1", "index": "0", "run_id": world.reg.list_runs()[0].id}
    deep = b'{"a":' * 5000 + b"{}" + b"}" * 5000  # nesting deeper than Python's recursion limit
    bodies: list[dict[str, Any]] = [
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"json": {"name": 5, "kind": [], "state": {}, "manifest_uri": 7, "run_id": 3, "status": None,
                  "outputs": "x", "inputs": 5, "spec": "x", "counts": [1], "role": 9, "tags": "t"}},
        {"json": [1, 2, 3]},
        {"json": {"name": "x" * 200_000, "description": "y" * 200_000, "manifest_uri": "file:///etc/hostname"}},
        {"content": deep, "headers": {"content-type": "application/json"}},
        {"content": (b"a" * (1 << 16) for _ in range(40)), "headers": {"content-type": "application/json"}},
    ]
    before = _counts(world)
    seen = 0
    for (method, path), _role in sorted(ROUTE_ROLES.items()):
        for values in (unknown, known):
            url = _fill(path, values)
            for body in bodies if method != "GET" else [{}]:
                kw = dict(body)
                if "content" in kw and not isinstance(kw["content"], bytes):  # a fresh chunked stream each time
                    kw["content"] = (b"a" * (1 << 16) for _ in range(40))
                r = client.request(method, url, headers={**admin, **kw.pop("headers", {})}, follow_redirects=False,
                                   **kw)
                seen += 1
                assert r.status_code < 500, (method, url, r.status_code, r.text[:300])
                assert len(r.content) < 20_000 or method == "GET", (method, url, len(r.content))  # no payload echo
                if r.status_code >= 400:
                    now = _counts(world)
                    assert now == before, (method, url, r.status_code, {k: (before[k], now[k]) for k in now
                                                                         if now[k] != before[k]})
                else:
                    before = _counts(world)
    assert seen > 200


def test_a_version_for_an_unknown_run_is_a_404_not_a_500(world: World) -> None:
    client = TestClient(create_app(world.reg, ApiSettings(lake_uri=world.lake.uri)), raise_server_exceptions=False)
    writer = {"Authorization": f"Bearer {world.tokens['writer']}"}
    manifest = world.reg.get_version("mix@1").manifest_uri
    before = _counts(world)
    r = client.post("/api/v1/versions", json={"manifest_uri": manifest, "run_id": str(uuid.uuid4())}, headers=writer)
    assert r.status_code == 404 and "does not exist" in r.json()["detail"]
    assert _counts(world) == before


def test_finishing_a_run_with_one_bad_output_writes_nothing(world: World) -> None:
    from datalake import write_version
    from synth.shapes import shape_samples

    client = TestClient(create_app(world.reg, ApiSettings(lake_uri=world.lake.uri)), raise_server_exceptions=False)
    writer = {"Authorization": f"Bearer {world.tokens['writer']}"}
    run = client.post("/api/v1/runs", json={"kind": "pipeline", "name": "half"}, headers=writer).json()
    good = write_version(world.lake, "fresh-output", shape_samples(3, seed=8)).uri
    bad = good.replace("/versions/", "/versions/0000") if "/versions/" in good else good + "x"
    before = _counts(world)
    r = client.post(f"/api/v1/runs/{run['id']}/finish", json={"status": "succeeded", "outputs": [good, bad]},
                    headers=writer)
    assert 400 <= r.status_code < 500, r.text
    assert _counts(world) == before  # the good output was not registered either
    got = client.get(f"/api/v1/runs/{run['id']}", headers=writer).json()
    assert got["status"] == "running" and got["outputs"] == []
    ok = client.post(f"/api/v1/runs/{run['id']}/finish", json={"status": "succeeded", "outputs": [good]},
                     headers=writer)
    assert ok.status_code == 200 and ok.json()["outputs"] == ["fresh-output@1"]


def test_a_chunked_60mb_spec_is_refused_without_being_stored(world: World) -> None:
    client = TestClient(create_app(world.reg, ApiSettings(lake_uri=world.lake.uri)), raise_server_exceptions=False)
    writer = {"Authorization": f"Bearer {world.tokens['writer']}"}
    n_runs = len(world.reg.list_runs(limit=10_000))

    def body() -> Any:  # a run whose spec is 60 MB, streamed without a Content-Length
        yield b'{"kind": "pipeline", "name": "big", "spec": {"blob": "'
        for _ in range(60):
            yield b"x" * (1 << 20)
        yield b'"}}'

    r = client.post("/api/v1/runs", content=body(), headers={**writer, "content-type": "application/json"})
    assert r.status_code == 413 and "over the limit" in r.json()["detail"]
    assert len(world.reg.list_runs(limit=10_000)) == n_runs
    r = client.post("/api/v1/datasets", json={"name": 123, "description": "z" * 500_000}, headers=writer)
    assert r.status_code == 422 and len(r.content) < 2000 and "zzzz" not in r.text


def test_paths_outside_the_roots_are_refused_for_sync_jobs_manifests_and_table_rows(world: World) -> None:
    import os
    from pathlib import Path

    from datalake.roots import OutsideRoots, Roots

    inbox = world.tmp / "inbox"  # the one extra root: where ingest sources and replicas may be
    inbox.mkdir()
    outside = world.tmp / "elsewhere"
    outside.mkdir()
    (inbox / "sneaky").symlink_to(outside)  # inside by name, outside by its real path
    app = create_app(world.reg, ApiSettings(lake_uri=world.lake.uri, roots=(str(inbox),)))
    client = TestClient(app, raise_server_exceptions=False)
    writer = {"Authorization": f"Bearer {world.tokens['writer']}"}
    before = _counts(world)
    for target in (str(outside), f"file://{outside}", f"{inbox}/../elsewhere", str(inbox / "sneaky" / "lake"),
                   "s3://someone-elses-bucket/lake", "/etc"):
        r = client.post("/api/v1/versions/mix@1/sync", json={"target": target}, headers=writer)
        assert r.status_code == 403 and "outside the allowed roots" in r.json()["detail"], (target, r.text)
        assert str(inbox) in r.json()["detail"]  # the message names what is allowed
    for src in (str(outside), "/etc", f"{inbox}/../elsewhere"):
        r = client.post("/api/v1/jobs", json={"type": "ingest", "source": src, "dataset": "x"}, headers=writer)
        assert r.status_code == 403, (src, r.text)
    r = client.post("/api/v1/versions", json={"manifest_uri": "file:///etc/datasets/x/versions/ab.json"}, headers=writer)
    assert r.status_code == 403
    assert _counts(world) == before  # nothing refused left a run, a replica or a version behind
    assert not any(outside.iterdir())
    # inside the roots it all works: a replica in the inbox, a job reading a table from there ...
    ok = client.post("/api/v1/versions/mix@1/sync", json={"target": str(inbox / "replica")}, headers=writer)
    assert ok.status_code == 200, ok.text
    pic = sorted(Path(world.raw).rglob("*.jpg"))[0]
    (inbox / "pic.jpg").write_bytes(pic.read_bytes())
    (inbox / "rows.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"image": "pic.jpg", "caption": "a picture inside the inbox"},
        {"image": "/etc/hostname", "caption": "a file of the server"},
        {"image": "../elsewhere/x.jpg", "caption": "a climb out of the inbox"},
        {"image": "sneaky/x.jpg", "caption": "through a symlink"}]) + "\n")
    (outside / "x.jpg").write_bytes(pic.read_bytes())
    job = client.post("/api/v1/jobs", json={"type": "ingest", "source": str(inbox / "rows.jsonl"), "dataset": "rows"},
                      headers=writer)
    assert job.status_code == 202, job.text
    app.state.jobs.wait()
    run = world.reg.get_run(job.json()["id"])
    assert run.status == "succeeded", run.error
    assert run.counts["ingested"] == 1 and run.counts["rejected"] == {"outside_roots": 3}
    # ... and the check itself: real paths, S3 prefixes on segment boundaries
    roots = Roots.of([str(inbox), "s3://bucket/team-a"])
    assert roots.allows(str(inbox / "a" / "b.jpg")) and roots.allows("s3://bucket/team-a/x/y")
    assert not roots.allows("s3://bucket/team-ab/x") and not roots.allows(os.path.join(str(inbox), "sneaky", "x"))
    try:
        roots.check("s3://bucket/team-a/../team-b/x")
    except OutsideRoots as exc:
        assert "'..'" in str(exc)
    else:
        raise AssertionError("an S3 key climbing out of its root was allowed")


def test_the_http_client_keeps_code_version_and_logs_uri(world: World) -> None:
    from registry.client import HttpClient

    from .conftest import serve

    with serve(create_app(world.reg, ApiSettings(lake_uri=world.lake.uri))) as url:
        c = HttpClient(url, token=world.tokens["writer"])
        run = c.start_run("pipeline", "remote", code_version="trainer 2.1 (abc123)", logs_uri="s3://logs/run.txt",
                          submitted_by="someone-else")
        got = world.reg.get_run(run.id)
        c.close()
    assert (got.code_version, got.logs_uri) == ("trainer 2.1 (abc123)", "s3://logs/run.txt")
    assert got.submitted_by == "writer-user"  # the token's user, never what the client claims
