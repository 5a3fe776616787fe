"""The three runners give the same kept set, rejects, counts -- and the same version digest."""

from __future__ import annotations

import collections
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datalake import Lake, LocalStore
from pipelines.run import run_pipeline
from pipelines.spec import parse_spec
from registry.service import Registry

from .conftest import SPEC, make_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    root = tmp_path_factory.mktemp("corpus") / "raw"
    return root, make_corpus(root)


def test_local_ray_spark_agree_exactly(tmp_path: Path, corpus: tuple[Path, int], ray_runner, spark_runner) -> None:  # type: ignore[no-untyped-def]
    raw, n_inputs = corpus
    results = {}
    for name, runner in (("local", None), ("ray", ray_runner), ("spark", spark_runner)):
        lake = Lake(LocalStore(tmp_path / name / "lake"))
        reg = Registry(f"sqlite:///{tmp_path / name / 'registry.db'}")
        spec = parse_spec({**SPEC, "input": str(raw), "runner": name if name != "local" else "local",
                           "runner_options": {"workers": 2} if name == "local" else {}})
        out = run_pipeline(spec, lake, reg, progress=False, runner=runner)
        v = reg.open_version(out["output"])
        rej = pq.read_table(v.store.url(v.manifest.rejects["path"])[len("file://"):]).to_pylist()
        results[name] = (out, sorted(s.key for s in v), sorted((r["key"], r["outcome"], r["stage"], r["reason"],
                                                                r["duplicate_of"]) for r in rej), v.manifest.version)
        reg.close()
    local, ray, spark = results["local"], results["ray"], results["spark"]
    for other in (ray, spark):
        assert other[1] == local[1]  # same kept keys
        assert other[2] == local[2]  # same rejects, with stage, reason and duplicate_of
        assert other[3] == local[3]  # same version digest
        for k in ("kept", "filtered", "duplicates", "rejected", "samples_in"):
            assert other[0][k] == local[0][k]
        # the same per-stage funnel (seconds aside)
        assert {n: {k: v for k, v in c.items() if k != "seconds"} for n, c in other[0]["stages"].items()} == \
            {n: {k: v for k, v in c.items() if k != "seconds"} for n, c in local[0]["stages"].items()}
    out = local[0]
    # accounting closes over every raw input, broken files included
    assert out["samples_in"] == n_inputs
    assert out["kept"] + sum(out["filtered"].values()) + out["duplicates"] + sum(out["rejected"].values()) == n_inputs
    assert out["rejected"] == {"empty_file": 1, "invalid_json": 1, "missing_caption": 1, "non_utf8_text": 1,
                               "too_many_pixels": 1, "truncated_image": 1}
    assert out["filtered"] == {"too_few_words": 1, "too_small": 1}
    assert out["duplicates"] >= 30  # the 30 planted near-duplicates (and any near-identical generated pairs)
    dup_rows = [r for r in local[2] if r[1] == "duplicate"]
    assert all(r[4] for r in dup_rows)  # every duplicate names the key it duplicates
    assert {r[2] for r in dup_rows} <= {"dedupe_exact", "dedupe_image", "dedupe_text"}
    # a PNG behind a .jpg name is not rejected for it (ingest stores it as 0.png)
    assert not [r for r in local[2] if r[0] == "disguised" and r[1] == "rejected"]


def test_run_is_recorded_with_lineage_and_rejects(tmp_path: Path, corpus: tuple[Path, int]) -> None:
    raw, n_inputs = corpus
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    lake = Lake(LocalStore(tmp_path / "lake"))
    out = run_pipeline(parse_spec({**SPEC, "input": str(raw)}), lake, reg, progress=False)
    run = reg.get_run(out["run_id"])
    assert run.kind == "pipeline" and run.status == "succeeded" and run.inputs == ["clean-input@1"]
    assert run.outputs == ["clean@1"] and run.counts["kept"] == out["kept"]
    assert sorted(reg.lineage("clean@1", "up").versions()) == ["clean-input@1", "clean@1"]
    v = reg.open_version("clean@1")
    assert v.manifest.rejects["count"] == out["samples_in"] - out["kept"] - sum(out["rejected"].values())
    assert set(v.manifest.extras) == {"scores", "signatures"}
    kept = v.get(0)
    assert set(kept.meta["scores"]) == {"image_filter", "text_filter"}
    # per stage: a chain from the samples that reached the first stage to the kept ones, each
    # stage's removals equal to its rows in the rejects table (counted here from the table)
    stages = out["stages"]
    assert list(stages) == [next(iter(s)) for s in SPEC["stages"]]
    rows = pq.read_table(v.store.url(v.manifest.rejects["path"])[len("file://"):]).to_pylist()
    assert all(r["stage"] in stages for r in rows)
    chain = [c["in"] for c in stages.values()] + [out["kept"]]
    assert chain[0] == out["samples_in"] - sum(out["ingest"]["rejected"].values())  # ingest rejects reach no stage
    assert [c["out"] for c in stages.values()] == chain[1:]
    for name, c in stages.items():
        mine = collections.Counter(f"{r['outcome']}:{r['reason']}" for r in rows if r["stage"] == name)
        assert c["removed"] == dict(mine) and c["in"] - c["out"] == sum(mine.values())
        assert c["seconds"] >= 0
    assert sum(sum(c["removed"].values()) for c in stages.values()) > 0
    # ... and the registry exports them to Prometheus
    from fastapi.testclient import TestClient
    from prometheus_client.parser import text_string_to_metric_families

    from registry.api import create_app

    page = TestClient(create_app(reg, with_web=False)).get("/metrics").text
    got = {(s.labels["stage"], s.labels["what"]): s.value for fam in text_string_to_metric_families(page)
           for s in fam.samples if s.name == "mmlake_pipeline_stage_samples_total" and s.labels["pipeline"] == SPEC["name"]}
    assert got == {(n, w): float(c[w]) for n, c in stages.items() for w in ("in", "out")}
    removed = {(s.labels["stage"], f"{s.labels['outcome']}:{s.labels['reason']}"): s.value
               for fam in text_string_to_metric_families(page) for s in fam.samples
               if s.name == "mmlake_pipeline_stage_removed_total"}
    assert removed == {(n, k): float(v) for n, c in stages.items() for k, v in c["removed"].items()}
    reg.close()


def test_ocr_stage_runs_alike_on_local_ray_and_spark(tmp_path: Path, ray_runner, spark_runner) -> None:  # type: ignore[no-untyped-def]
    """The OCR stage (rapidocr models loaded once per worker) on the three runners: same lines,
    same filter decisions, same version digest; an undecodable page is rejected, not fatal."""
    import dataclasses

    from datalake import write_version
    from pipelines.ocr.quality import cer
    from synth.text import text_samples

    pages = text_samples(5, seed=9, size=(480, 200), augment=False)
    truth = {s.key: s.content[-1].text for s in pages}
    bare = [dataclasses.replace(s, annotations=(), content=s.content[:1]) for s in pages]
    bare.append(dataclasses.replace(bare[0], key="broken", blobs={"0.jpg": b"\xff\xd8 not a jpeg"}))
    spec_body = {"name": "ocr-pages", "input": "pages@1", "output": "pages-ocr", "partition_size": 2,
                 "stages": [{"ocr": {"engine": "rapidocr", "as_transcript": True}},
                            {"ocr_filter": {"min_confidence": 0.5, "min_lines": 1}}]}
    digests = {}
    for name, runner in (("local", None), ("ray", ray_runner), ("spark", spark_runner)):
        lake = Lake(LocalStore(tmp_path / name / "lake"))
        reg = Registry(f"sqlite:///{tmp_path / name / 'registry.db'}")
        reg.register_version(write_version(lake, "pages", bare))
        spec = parse_spec({**spec_body, "runner": name, "runner_options": {"workers": 2} if name == "local" else {}})
        out = run_pipeline(spec, lake, reg, progress=False, runner=runner)
        assert out["kept"] == 5 and out["rejected"] == {"ocr_failed": 1}, out
        v = reg.open_version(out["output"])
        got = {s.key: s for s in v}
        for key, want in truth.items():
            s = got[key]
            assert s.kind == "ocr" and cer(s.content[-1].text, want) <= 0.02, (name, key)
            assert [a.role for a in s.annotations].count("ocr_line") == s.meta["ocr"]["0.jpg"]["lines"] > 0
        digests[name] = (v.manifest.version, sorted((k, s.content[-1].text) for k, s in got.items()))
        reg.close()
    assert digests["ray"] == digests["local"] and digests["spark"] == digests["local"]
