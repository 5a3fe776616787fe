"""The registry service, on SQLite and on a real PostgreSQL (same tests, both databases)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import warnings
from pathlib import Path

import pytest

from datalake import Lake, LocalStore, write_version
from registry.service import Registry
from registry.types import Conflict, DeprecatedVersionWarning, LifecycleError, NotFound, RegistryError
from synth.shapes import shape_samples


@pytest.fixture
def reg(registry_url: str, tmp_path: Path) -> Registry:
    r = Registry(registry_url, lineage_target=str(tmp_path / "lineage.jsonl"))
    yield r
    r.close()


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake(LocalStore(tmp_path / "lake"))


def test_register_is_idempotent_and_numbers_versions(reg: Registry, lake: Lake) -> None:
    v1 = write_version(lake, "caps", shape_samples(3))
    v2 = write_version(lake, "caps", shape_samples(4))
    a = reg.register_version(v1)
    again = reg.register_version(v1.uri)  # same digest, by URI this time
    b = reg.register_version(v2)
    assert (a.number, again.number, b.number) == (1, 1, 2)
    assert again == a
    assert [v.ref for v in reg.list_versions("caps")] == ["caps@1", "caps@2"]
    assert reg.resolve("caps").number == 2 and reg.resolve("caps@latest").number == 2
    assert reg.resolve("caps@1").version == v1.manifest.version
    assert reg.resolve(f"caps@{v1.manifest.version[:6]}").number == 1
    info = reg.get_dataset("caps")
    assert (info.kind, info.versions, info.latest, info.samples) == ("caption", 2, 2, 4)
    assert a.stats["kinds"] == {"caption": 3} and a.samples == 3 and a.manifest_uri == v1.uri


def test_unknown_and_malformed_refs(reg: Registry, lake: Lake) -> None:
    reg.register_version(write_version(lake, "caps", shape_samples(2)))
    with pytest.raises(NotFound, match=r"dataset 'nope' is not registered; known: \['caps'\]"):
        reg.resolve("nope")
    with pytest.raises(NotFound, match=r"caps@7: no such version; caps has versions \[1\]"):
        reg.resolve("caps@7")
    with pytest.raises(RegistryError, match="invalid dataset name"):
        reg.resolve("<script>@1")
    with pytest.raises(RegistryError, match="invalid version"):
        reg.resolve("caps@v1!")
    with pytest.raises(RegistryError, match="not a valid mmlake manifest|not a manifest URI|no manifest"):
        reg.register_version("file:///nowhere/datasets/x/versions/abc.json")


def test_datasets_search_and_filters(reg: Registry) -> None:
    reg.create_dataset("web-captions", kind="caption", owner="ana", description="Alt-text pairs", tags=["web", "en"])
    reg.create_dataset("gui-agent", kind="agent", description="Screens and actions", tags=["gui"])
    reg.update_dataset("gui-agent", state="deprecated")
    assert [d.name for d in reg.list_datasets()] == ["gui-agent", "web-captions"]
    assert [d.name for d in reg.list_datasets(q="ALT-TEXT")] == ["web-captions"]
    assert [d.name for d in reg.list_datasets(kind="agent")] == ["gui-agent"]
    assert [d.name for d in reg.list_datasets(tag="en")] == ["web-captions"]
    assert [d.name for d in reg.list_datasets(state="deprecated")] == ["gui-agent"]
    with pytest.raises(RegistryError, match="tags are a list"):
        reg.create_dataset("x", tags="notalist")  # type: ignore[arg-type]


def test_runs_and_lineage_both_ways_to_any_depth(reg: Registry, lake: Lake) -> None:
    raw = write_version(lake, "raw", shape_samples(4))
    ingest = reg.start_run("ingest", "ingest raw")
    reg.finish_run(ingest.id, "succeeded", counts={"ingested": 4}, outputs=[raw])
    clean = write_version(lake, "clean", shape_samples(3))
    run2 = reg.start_run("pipeline", "clean-captions", inputs=["raw@1"], spec={"stages": ["decode"]})
    done = reg.finish_run(run2.id, "succeeded", counts={"kept": 3, "filtered": {"small": 1}}, outputs=[clean.uri])
    assert done.inputs == ["raw@1"] and done.outputs == ["clean@1"] and done.status == "succeeded"
    mix = write_version(lake, "mix", shape_samples(2))
    run3 = reg.start_run("pipeline", "mix", inputs=["clean@1", "raw@1"])
    reg.finish_run(run3.id, "succeeded", outputs=[mix])
    assert reg.get_version("clean@1").created_by_run == run2.id

    up = reg.lineage("mix@1", "up")
    assert sorted(up.versions()) == ["clean@1", "mix@1", "raw@1"]
    assert (f"r:{run3.id}", "v:mix@1") in up.edges and ("v:raw@1", f"r:{run2.id}") in up.edges
    assert sorted(reg.lineage("mix@1", "up", depth=1).versions()) == ["clean@1", "mix@1", "raw@1"]
    assert reg.lineage("clean@1", "up", depth=1).versions() == ["clean@1", "raw@1"]
    assert reg.lineage("mix@1", "up", depth=0).versions() == ["mix@1"]
    down = reg.lineage("raw@1", "down")
    assert sorted(down.versions()) == ["clean@1", "mix@1", "raw@1"]
    assert sorted(reg.lineage("clean@1", "both").versions()) == ["clean@1", "mix@1", "raw@1"]
    assert {r.name for r in reg.list_runs(dataset="clean")} == {"clean-captions", "mix"}
    with pytest.raises(Conflict, match="already finished"):
        reg.finish_run(run2.id, "failed")
    with pytest.raises(NotFound):
        reg.start_run("pipeline", "x", inputs=["ghost@1"])


def test_failed_run_records_error(reg: Registry) -> None:
    run = reg.start_run("job", "broken")
    out = reg.finish_run(run.id, "failed", error="ValueError: bad spec")
    assert (out.status, out.error, out.outputs) == ("failed", "ValueError: bad spec", [])
    assert reg.list_runs(status="failed")[0].id == run.id


def test_lifecycle_rules_reads_and_purge(reg: Registry, lake: Lake) -> None:
    v1 = write_version(lake, "caps", shape_samples(2))
    v2 = write_version(lake, "caps", shape_samples(3))
    reg.register_version(v1)
    reg.register_version(v2, state="draft")
    assert reg.resolve("caps@latest").number == 1  # drafts are not latest
    reg.transition("caps@2", "active")
    assert reg.resolve("caps").number == 2
    with pytest.raises(LifecycleError, match=r"caps@1 is active; it can move to deprecated, not deleted"):
        reg.transition("caps@1", "deleted")
    reg.transition("caps@1", "deprecated")
    with pytest.warns(DeprecatedVersionWarning, match="caps@1 is deprecated"):
        reg.resolve("caps@1")
    reg.transition("caps@1", "archived")
    with pytest.raises(LifecycleError, match="caps@1 is archived"):
        reg.resolve("caps@1")
    reg.transition("caps@1", "deleted")
    with pytest.raises(LifecycleError, match="caps@1 is deleted"):
        reg.resolve("caps@1")
    with pytest.raises(LifecycleError, match="final"):
        reg.transition("caps@1", "active")
    # objects stay during the retention period, then purge removes them (manifest first)
    reg.retention_s = 3600
    assert reg.purge() == []
    assert lake.store.exists(f"datasets/caps/versions/{v1.manifest.version}.json")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    assert reg.purge(now=later) == ["caps@1"]
    assert not lake.store.exists(f"datasets/caps/versions/{v1.manifest.version}.json")
    v1_dir = v1.manifest.shards[0].path.rsplit("/", 1)[0]
    assert not [p for p in lake.store.list("datasets/caps") if v1_dir in p]
    assert reg.get_version("caps@1").purged and reg.lineage("caps@1").versions() == ["caps@1"]
    assert lake.open_version("caps").manifest.version == v2.manifest.version  # the lake still reads v2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert list(reg.open_version("caps@2")) == shape_samples(3)


def test_sync_to_s3_verifies_resumes_and_never_registers_a_failed_copy(reg: Registry, lake: Lake, s3_endpoint: str,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import make_s3_store

    v = write_version(lake, "caps", shape_samples(9), shard_samples=4)
    reg.register_version(v)
    target = make_s3_store(s3_endpoint)
    monkeypatch.setenv("MMLAKE_S3_ENDPOINT", s3_endpoint)
    rep = reg.sync("caps@1", target.uri)
    assert rep.status == "verified" and rep.manifest_uri.startswith("s3://") and rep.bytes > 0
    copy = Lake(target).open_version("caps@latest")
    assert copy.manifest == v.manifest and list(copy) == list(v) and copy.verify() == []
    runs = reg.list_runs(kind="sync")
    assert runs[0].status == "succeeded" and runs[0].counts["objects_copied"] == 7  # 3 shards + 3 indexes + manifest
    # resumable: a second sync finds every object verified and copies only the manifest
    reg.sync("caps@1", target.uri)
    assert reg.list_runs(kind="sync")[0].counts["objects_copied"] == 1
    assert [r.store_uri for r in reg.list_replicas("caps@1")] == [target.uri]
    # a corrupted source never becomes a replica
    other = make_s3_store(s3_endpoint)
    shard = Path(v.store.url(v.manifest.shards[1].path)[len("file://"):])
    shard.write_bytes(b"x" + shard.read_bytes()[1:])
    with pytest.raises(ValueError, match="does not match the manifest"):
        reg.sync("caps@1", other.uri)
    assert [r.store_uri for r in reg.list_replicas("caps@1")] == [target.uri]
    assert reg.list_runs(kind="sync")[0].status == "failed"
    assert not other.exists(f"datasets/caps/versions/{v.manifest.version}.json")


def test_openlineage_events_are_valid(reg: Registry, lake: Lake, tmp_path: Path) -> None:
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.facet_v2 import dataset_version_dataset, error_message_run, job_type_job
    from openlineage.client.serde import Serde

    raw = write_version(lake, "raw", shape_samples(2))
    r1 = reg.start_run("ingest", "ingest raw")
    reg.finish_run(r1.id, "succeeded", outputs=[raw])
    r2 = reg.start_run("pipeline", "clean", inputs=["raw@1"])
    reg.finish_run(r2.id, "failed", error="boom")
    events = [json.loads(line) for line in (tmp_path / "lineage.jsonl").read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START", "COMPLETE", "START", "FAIL"]

    def rebuild(e: dict) -> RunEvent:  # type: ignore[type-arg]
        """Re-create the event with the openlineage-python types (their validators check
        UUIDs, times and URIs); it must serialise back to exactly what we wrote."""
        def ds(cls, d):  # type: ignore[no-untyped-def]
            facets = {k: dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=f["datasetVersion"],
                                                                             producer=f["_producer"])
                      for k, f in d.get("facets", {}).items()}
            return cls(namespace=d["namespace"], name=d["name"], facets=facets)
        rf = {k: error_message_run.ErrorMessageRunFacet(message=f["message"], programmingLanguage=f["programmingLanguage"],
                                                        producer=f["_producer"]) for k, f in e["run"].get("facets", {}).items()}
        jf = {k: job_type_job.JobTypeJobFacet(processingType=f["processingType"], integration=f["integration"],
                                              jobType=f["jobType"], producer=f["_producer"])
              for k, f in e["job"].get("facets", {}).items()}
        return RunEvent(eventType=RunState[e["eventType"]], eventTime=e["eventTime"], run=Run(runId=e["run"]["runId"], facets=rf),
                        job=Job(namespace=e["job"]["namespace"], name=e["job"]["name"], facets=jf),
                        inputs=[ds(InputDataset, d) for d in e["inputs"]], outputs=[ds(OutputDataset, d) for d in e["outputs"]],
                        producer=e["producer"])

    for e in events:
        assert Serde.to_dict(rebuild(e)) == e
        assert e["schemaURL"].startswith("https://openlineage.io/spec/") and "RunEvent" in e["schemaURL"]
    complete = events[1]
    assert complete["run"]["runId"] == r1.id and complete["outputs"][0]["name"] == "raw"
    assert complete["outputs"][0]["facets"]["version"]["datasetVersion"] == raw.manifest.version
    assert complete["outputs"][0]["namespace"] == lake.uri
    assert events[3]["inputs"][0]["name"] == "raw" and events[3]["run"]["facets"]["errorMessage"]["message"] == "boom"
    with pytest.raises(ValueError):  # the types do validate: a run id must be a UUID
        Run(runId="not-a-uuid")


def test_unreachable_lineage_endpoint_never_fails_a_run(registry_url: str, lake: Lake) -> None:
    from tests.conftest import free_port

    reg = Registry(registry_url, lineage_target=f"http://127.0.0.1:{free_port()}/api/v1/lineage")
    run = reg.start_run("ingest", "x")
    assert reg.finish_run(run.id, "succeeded", outputs=[write_version(lake, "d", shape_samples(1))]).status == "succeeded"


def test_migrations_match_the_models(registry_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from registry.models import Base

    reg = Registry(registry_url)
    with reg.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: add an Alembic revision: {diff}"
    Registry(registry_url).close()  # migrating again is a no-op


def test_concurrent_writers_lose_nothing(registry_url: str, tmp_path: Path) -> None:
    """20 writers at once, each registering 3 versions of a shared dataset and of its own, and
    recording a run: every registration is present exactly once, numbers unique and dense."""
    lake = Lake(LocalStore(tmp_path / "lake"))
    versions = [[write_version(lake, "shared", shape_samples(1, seed=w * 10 + k)) for k in range(3)] for w in range(20)]
    reg = Registry(registry_url)
    errors: list[BaseException] = []
    barrier = threading.Barrier(20)

    def writer(w: int) -> None:
        try:
            barrier.wait()
            run = reg.start_run("pipeline", f"writer-{w}")
            for v in versions[w]:
                reg.register_version(v, run_id=run.id)
            reg.register_version(write_version(lake, f"own-{w}", shape_samples(1, seed=1000 + w)))
            reg.finish_run(run.id, "succeeded", counts={"n": 3})
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    shared = reg.list_versions("shared")
    assert sorted(v.number for v in shared) == list(range(1, 61))
    assert sorted(v.version for v in shared) == sorted(v.manifest.version for ws in versions for v in ws)
    assert len(reg.list_datasets()) == 21
    runs = reg.list_runs(limit=100)
    assert len(runs) == 20 and all(r.status == "succeeded" and len(r.outputs) == 3 for r in runs)
    reg.close()
