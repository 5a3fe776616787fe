"""A pipeline whose source is a folder of HTML pages opened in Chromium (``source: gui``): real
SQLite manual pages plus a near-identical copy, an empty page and a page that never finishes
loading. Every page is accounted for (kept, duplicate of its original, filtered, rejected with
the page named), the local and Ray runners write the same version, and the run records the
collector's statistics."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from datalake import Lake, LocalStore
from pipelines.run import run_pipeline
from pipelines.spec import SpecError, parse_spec
from registry.service import Registry
from synth.gui.browser import unavailable_reason

DOCS = Path("/usr/share/doc/sqlite3")
pytestmark = pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert DOCS.is_dir(), "apt-get install sqlite3-doc (make setup installs it)"
    root = tmp_path_factory.mktemp("pages")
    (root / "images").mkdir()
    shutil.copy(DOCS / "sqlite.css", root)
    shutil.copy(DOCS / "images" / "sqlite370_banner.gif", root / "images")
    for name in ("about.html", "arch.html", "assert.html"):
        shutil.copy(DOCS / name, root)
    about = (DOCS / "about.html").read_text()
    assert "small" in about
    (root / "about-copy.html").write_text(about.replace("small", "tiny", 1))  # one word apart
    (root / "blank.html").write_text("<!doctype html><title>blank</title><body></body>")
    (root / "hang.html").write_text("<!doctype html><title>hang</title><body><p>never loads</p>"
                                    "<script>for (;;) {}</script></body>")
    return root


def _spec(pages: Path, runner: str, **source: object) -> dict[str, object]:
    return {"name": "gui-docs-test", "input": str(pages), "output": "gui", "runner": runner,
            "runner_options": {"workers": 1} if runner == "local" else {}, "partition_size": 2,
            "source": {"gui": {"generator": "grounding", "devices": ["desktop-1280"], "timeout_s": 5, **source}},
            "stages": [{"dedupe_image": {"max_hamming": 3}}]}


def test_pages_folder_on_local_and_ray_every_page_accounted(tmp_path: Path, pages: Path, ray_runner) -> None:  # type: ignore[no-untyped-def]
    results = {}
    for name, runner in (("local", None), ("ray", ray_runner)):
        lake = Lake(LocalStore(tmp_path / name / "lake"))
        reg = Registry(f"sqlite:///{tmp_path / name / 'registry.db'}")
        out = run_pipeline(parse_spec(_spec(pages, name)), lake, reg, progress=False, runner=runner)
        v = reg.open_version(out["output"])
        rows = pq.read_table(v.store.url(v.manifest.rejects["path"])[len("file://"):]).to_pylist()
        run = reg.get_run(out["run_id"])
        results[name] = (out, v, rows, run)
        reg.close()
    (out, v, rows, run), (rout, rv, rrows, _) = results["local"], results["ray"]
    assert rv.manifest.version == v.manifest.version  # same pages, same seed -> same version, any runner
    assert {k: rout[k] for k in ("kept", "filtered", "duplicates", "rejected", "stats")} == \
        {k: out[k] for k in ("kept", "filtered", "duplicates", "rejected", "stats")}
    assert sorted(r["key"] for r in rrows) == sorted(r["key"] for r in rows)

    samples = {s.key: s for s in v}
    by_page = {s.source.uri.rsplit("/", 1)[1]: s for s in samples.values()}
    outcome = {r["detail"].split(" ")[0].lstrip("/") if r["stage"] == "source" else r["key"]: r for r in rows}
    # six pages, six inputs: three kept, the copy a duplicate of its original, one filtered, one rejected
    assert out["samples_in"] == 6
    assert out["kept"] + sum(out["filtered"].values()) + out["duplicates"] + sum(out["rejected"].values()) == 6
    assert out["filtered"] == {"no_elements": 1} and out["rejected"] == {"page_failed": 1}
    assert outcome["blank.html"]["outcome"] == "filtered"
    assert outcome["hang.html"]["outcome"] == "rejected" and "Timeout" in outcome["hang.html"]["detail"]
    assert out["duplicates"] == 1
    dup = next(r for r in rows if r["outcome"] == "duplicate")
    kept_about = by_page.get("about.html") or by_page.get("about-copy.html")
    assert kept_about is not None and dup["duplicate_of"] == kept_about.key
    assert {"arch.html", "assert.html"} <= set(by_page)
    for s in samples.values():  # grounding samples with verified targets, on the pinned device
        assert s.kind == "agent" and s.meta["device"] == "desktop-1280" and s.meta["task"] == "grounding"
        assert any(a.role == "click_point" for a in s.annotations) or any(a.type == "box" for a in s.annotations)
    # the collector's statistics are the run's
    stats = run.counts["stats"]
    assert stats["screens.desktop"] == 5 and stats["targets"] > 20 and stats["pages.failed.TimeoutError"] == 1
    assert run.parameters["source"]["digest"] and run.parameters["source"]["input"] == [str(pages)]


def test_gui_source_spec_errors(pages: Path) -> None:
    with pytest.raises(SpecError, match="generator 'clicks' is not one of"):
        parse_spec(_spec(pages, "local", generator="clicks"))
    with pytest.raises(SpecError, match="devices must be a list of"):
        parse_spec(_spec(pages, "local", devices=["phone"]))
    with pytest.raises(SpecError, match="unknown option"):
        parse_spec(_spec(pages, "local", screen=3))
    lake = Lake(LocalStore(pages.parent / "lake-err"))
    reg = Registry(f"sqlite:///{pages.parent / 'err.db'}")
    with pytest.raises(SpecError, match="is not a folder"):
        run_pipeline(parse_spec({**_spec(pages, "local"), "input": str(pages / "nope")}), lake, reg, progress=False)
    with pytest.raises(SpecError, match="trajectories follow a folder's links"):
        run_pipeline(parse_spec({**_spec(pages, "local", generator="trajectories"), "input": "http://127.0.0.1:9/app"}),
                     lake, reg, progress=False)
    reg.close()
