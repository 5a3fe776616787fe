"""Tokens that expire and are revoked, the audit trail, bounded list pages, one writer of the
lake's ``latest``, purge that leaves nothing behind, and sample metadata that cannot change."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import pickle
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from datalake import Lake, LocalStore, write_version
from datalake.sample import SampleError
from registry.api import ApiSettings, create_app
from registry.models import Token
from registry.service import Registry
from synth.shapes import shape_samples

from .conftest import World


def test_tokens_expire_are_revoked_and_record_their_last_use(world: World) -> None:
    app = create_app(world.reg, ApiSettings(reads_open=False, lake_uri=world.lake.uri))
    c = TestClient(app)
    writer = {"Authorization": f"Bearer {world.tokens['writer']}"}
    admin = {"Authorization": f"Bearer {world.tokens['admin']}"}
    r = c.post("/api/v1/tokens", json={"label": "ci", "expires_in_s": 3600}, headers=writer)
    assert r.status_code == 201, r.text
    made = r.json()
    ci = {"Authorization": f"Bearer {made['token']}"}
    assert made["user"] == "writer-user" and made["state"] == "active" and made["expires_at"]
    assert c.get("/api/v1/datasets", headers=ci).status_code == 200
    listed = {t["id"]: t for t in c.get("/api/v1/tokens", headers=writer).json()}
    assert listed[made["id"]]["last_used_at"] is not None and "token" not in listed[made["id"]]
    assert all(t["user"] == "writer-user" for t in listed.values())  # a writer sees only their own
    # a writer may not mint tokens for others or revoke theirs; an admin may
    assert c.post("/api/v1/tokens", json={"user": "admin-user"}, headers=writer).status_code == 403
    admins = [t["id"] for t in c.get("/api/v1/tokens?user=admin-user", headers=admin).json()]
    assert c.delete(f"/api/v1/tokens/{admins[0]}", headers=writer).status_code == 403
    # expiry: the same token an hour and a second later is refused
    with world.reg.session() as s:
        s.get(Token, made["id"]).expires_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    assert c.get("/api/v1/datasets", headers=ci).status_code == 401
    assert {t["id"]: t for t in c.get("/api/v1/tokens", headers=writer).json()}[made["id"]]["state"] == "expired"
    # revocation takes effect at once, for the API and the web login
    other = c.post("/api/v1/tokens", json={"label": "laptop"}, headers=writer).json()
    assert c.delete(f"/api/v1/tokens/{other['id']}", headers=writer).json()["state"] == "revoked"
    assert c.get("/api/v1/datasets", headers={"Authorization": f"Bearer {other['token']}"}).status_code == 401
    assert c.post("/login", data={"token": other["token"]}, follow_redirects=False).status_code == 401
    assert c.post("/api/v1/tokens", json={"expires_in_s": 5}, headers=writer).status_code == 422  # < 60 s
    # the audit trail names who did it, never the secret
    audit = c.get("/api/v1/audit?action=token.", headers=admin).json()
    assert [(e["actor"], e["action"]) for e in audit][:2] == [("writer-user", "token.revoke"),
                                                              ("writer-user", "token.create")]
    assert made["token"] not in json.dumps(audit) and other["token"] not in json.dumps(audit)
    assert c.get("/api/v1/audit", headers=writer).status_code == 403


def test_every_change_is_in_the_audit_with_its_actor(world: World) -> None:
    app = create_app(world.reg, ApiSettings(lake_uri=world.lake.uri))
    c = TestClient(app)
    admin = {"Authorization": f"Bearer {world.tokens['admin']}"}
    writer = {"Authorization": f"Bearer {world.tokens['writer']}"}
    new = write_version(world.lake, "mix", shape_samples(3, seed=41))
    assert c.post("/api/v1/versions", json={"manifest_uri": new.uri}, headers=writer).status_code == 201
    assert c.post("/api/v1/versions/mix@2/lifecycle", json={"state": "deprecated"}, headers=admin).status_code == 200
    assert c.patch("/api/v1/datasets/mix", json={"tags": ["a"]}, headers=writer).status_code == 200
    assert c.post("/api/v1/users", json={"name": "newbie", "role": "reader"}, headers=admin).status_code == 201
    got = [(e["actor"], e["action"], e["target"]) for e in c.get("/api/v1/audit?limit=4", headers=admin).json()]
    assert got == [("admin-user", "user.create", "newbie"), ("writer-user", "dataset.update", "mix"),
                   ("admin-user", "version.lifecycle", "mix@2"), ("writer-user", "version.register", "mix@2")]
    page2 = c.get("/api/v1/audit?limit=2&offset=2", headers=admin).json()
    assert [e["target"] for e in page2] == ["mix@2", "mix@2"]
    # the web registry shows it to admins
    c.cookies.set("mmlake_token", world.tokens["admin"])
    html = c.get("/audit").text
    assert "version.lifecycle" in html and "newbie" in html


def test_list_routes_are_paged_and_bounded(world: World) -> None:
    c = TestClient(create_app(world.reg, ApiSettings(lake_uri=world.lake.uri)))
    for i in range(5):
        r = world.reg.start_run("pipeline", f"page-{i}")
        world.reg.finish_run(r.id, "succeeded")
    total = len(world.reg.list_runs(limit=1000))
    first = c.get("/api/v1/runs?limit=3")
    assert first.status_code == 200 and len(first.json()) == 3
    assert 'rel="next"' in first.headers["link"] and "offset=3" in first.headers["link"]
    ids = [r["id"] for r in first.json()]
    rest = c.get("/api/v1/runs?limit=1000&offset=3").json()
    assert len(ids) + len(rest) == total and not set(ids) & {r["id"] for r in rest}
    assert "link" not in c.get("/api/v1/runs?limit=1000").headers  # the last page has no next
    for path in ("/api/v1/runs", "/api/v1/datasets", "/api/v1/jobs", "/api/v1/datasets/mix/versions",
                 "/api/v1/versions/raw@1/rejects"):
        assert c.get(f"{path}?limit=100000").status_code == 422, path
        assert c.get(f"{path}?offset=-1").status_code == 422, path
    assert [d["name"] for d in c.get("/api/v1/datasets?limit=2&offset=1").json()] == ["mix", "raw"]


def test_the_lakes_latest_follows_the_registry(tmp_path: Path) -> None:
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    lake = Lake(LocalStore(tmp_path / "lake"))
    latest = lambda: lake.open_version("caps").manifest.version  # noqa: E731 - what a lake-only reader sees
    v1 = write_version(lake, "caps", shape_samples(2, seed=1))
    v2 = write_version(lake, "caps", shape_samples(3, seed=2))
    reg.register_version(v1)
    reg.register_version(v2)
    assert latest() == v2.manifest.version == reg.resolve("caps@latest").version
    again = write_version(lake, "caps", shape_samples(2, seed=1))  # the content of v1, committed again
    assert again.manifest.version == v1.manifest.version
    assert latest() == v2.manifest.version  # the pointer did not move back
    reg.transition("caps@2", "deprecated")
    reg.transition("caps@2", "archived")  # the registry's latest is caps@1 now: so is the lake's
    assert reg.resolve("caps@latest").number == 1 and latest() == v1.manifest.version
    draft = write_version(lake, "caps", shape_samples(4, seed=3))
    reg.register_version(draft, state="draft")  # drafts are not latest in either
    assert latest() == v1.manifest.version
    reg.close()


def test_purge_leaves_no_sidecar_tables_and_no_replica_behind(tmp_path: Path) -> None:
    from pipelines.run import run_pipeline
    from pipelines.spec import parse_spec
    from synth.shapes import write_caption_folder

    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}", retention_s=0)
    lake = Lake(LocalStore(tmp_path / "lake"))
    write_caption_folder(tmp_path / "raw", 12, seed=3)
    spec = parse_spec({"name": "p", "input": str(tmp_path / "raw"), "output": "deduped", "runner": "local",
                       "stages": [{"decode": {}}, {"image_filter": {"min_side": 8}}, {"dedupe_image": {"max_hamming": 2}}]})
    run_pipeline(spec, lake, reg, progress=False)
    v = reg.open_version("deduped@1")
    assert {"scores", "signatures"} <= set(v.manifest.extras)
    reg.sync("deduped@1", str(tmp_path / "replica"))
    replica = LocalStore(tmp_path / "replica")
    assert any(replica.list("datasets/deduped"))
    reg.transition("deduped@1", "deprecated")
    reg.transition("deduped@1", "archived")
    reg.transition("deduped@1", "deleted")
    assert reg.purge(actor="ops") == ["deduped@1"]
    left = [p for p in lake.store.list("datasets/deduped") if p.rsplit("/", 1)[-1] != "latest"]
    assert left == [], left
    assert [p for p in replica.list("datasets/deduped") if not p.endswith("refs/latest")] == []
    assert [r.status for r in reg.list_replicas("deduped@1")] == ["purged"]
    assert reg.audit(action="version.purge")[0]["actor"] == "ops"
    reg.close()


def test_sample_meta_is_json_and_cannot_change_after_construction() -> None:
    s = shape_samples(1, seed=1)[0]
    s = dataclasses.replace(s, meta={"scores": {"clip": 0.3}, "tags": ["a", "b"], "pair": (1, 2)})
    for mutate in (lambda: s.meta.__setitem__("x", 1), lambda: s.meta["tags"].append("c"),
                   lambda: s.meta["scores"].update(clip=0.9), lambda: s.meta["tags"].__setitem__(0, "z")):
        with pytest.raises(TypeError, match="read-only"):
            mutate()
    assert s.meta == {"scores": {"clip": 0.3}, "tags": ["a", "b"], "pair": [1, 2]}
    assert json.loads(s.to_json_bytes())["meta"]["pair"] == [1, 2]
    assert pickle.loads(pickle.dumps(s)) == s
    changed = dataclasses.replace(s, meta={**s.meta, "tags": [*s.meta["tags"], "c"]})
    assert changed.meta["tags"] == ["a", "b", "c"] and s.meta["tags"] == ["a", "b"]
    for bad, where in (({"x": {1, 2}}, "meta.x"), ({"q": [0.5, math.nan]}, "meta.q[1]")):
        with pytest.raises(SampleError, match=rf"{s.key}.*{where.replace('[', '.').replace(']', '')}|{s.key}"):
            dataclasses.replace(s, meta=bad)


def test_token_and_audit_commands(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from mmlake.cli import main

    url = f"sqlite:///{tmp_path / 'r.db'}"
    env = {"MMLAKE_REGISTRY": url, "MMLAKE_LAKE": str(tmp_path / "lake")}
    run = CliRunner()
    assert run.invoke(main, ["registry", "create-user", "ana", "--role", "writer"], env=env).exit_code == 0
    made = run.invoke(main, ["registry", "token", "create", "--user", "ana", "--label", "ci", "--expires-in", "600",
                             "--json"], env=env)
    assert made.exit_code == 0, made.output
    tok = json.loads(made.output)
    reg = Registry(url)
    assert reg.authenticate(tok["token"]) == ("ana", "writer")
    listed = json.loads(run.invoke(main, ["registry", "token", "list", "--json"], env=env).output)
    assert [(t["label"], t["state"]) for t in listed] == [("default", "active"), ("ci", "active")]
    assert all("token" not in t for t in listed)
    out = run.invoke(main, ["registry", "token", "revoke", str(tok["id"])], env=env)
    assert out.exit_code == 0 and "revoked" in out.output
    assert reg.authenticate(tok["token"]) is None
    audit = run.invoke(main, ["registry", "audit"], env=env)
    assert audit.exit_code == 0 and "token.revoke" in audit.output and "user.create" in audit.output
    assert run.invoke(main, ["registry", "token", "create", "--user", "nobody"], env=env).exit_code != 0
    reg.close()
