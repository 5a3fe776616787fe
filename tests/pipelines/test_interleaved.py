"""The html-documents pipeline: HTML pages (the trap page and pages of the SQLite manual) and an
EPUB ingested as interleaved documents, then image_filter (a document loses a failing image,
not itself), interleaved_filter (text nodes removed by reason, documents outside the limits
filtered) and text dedupe -- the same version on the local and the Ray runner."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from datalake import Lake, LocalStore
from datalake.sample import MediaPart, TextPart
from pipelines.run import run_pipeline
from pipelines.spec import parse_spec
from registry.service import Registry
from tests.datalake.test_html import DOCS, TRAPS, _epub, png

SPEC = Path(__file__).resolve().parents[2] / "pipelines" / "specs" / "html-documents.yaml"
PAGES = ("lang_select.html", "about.html", "releaselog/3_39_3.html", "releaselog/3_39_4.html", "datatype3.html")


def _site(root: Path) -> Path:
    (root / "img").mkdir(parents=True)
    (root / "releaselog").mkdir()
    for name in PAGES:
        shutil.copy(DOCS / name, root / name)
    shutil.copy(DOCS / "images" / "sqlite370_banner.gif", root / "img")  # the banner, under another folder
    for name in PAGES:  # point the copies at it
        p = root / name
        p.write_text(p.read_text().replace("images/sqlite370_banner.gif", "img/sqlite370_banner.gif"))  # ../ kept
    (root / "img" / "a.png").write_bytes(png(300, 200, (200, 0, 0)))
    (root / "img" / "lazy.png").write_bytes(png(320, 240, (0, 150, 0)))
    (root / "img" / "pixel.gif").write_bytes(png(1, 1, (255, 255, 255)))
    (root / "traps.html").write_text(TRAPS.replace("../pages/img/", "img/"))
    (root / "short.html").write_text("<html><body><p>Too short.</p><img src='img/a.png'></body></html>")
    _epub(root / "book.epub")
    return root


def test_html_documents_pipeline_on_local_and_ray(tmp_path: Path, ray_runner) -> None:  # type: ignore[no-untyped-def]
    site = _site(tmp_path / "site")
    doc = yaml.safe_load(SPEC.read_text())
    results = {}
    for name, runner in (("local", None), ("ray", ray_runner)):
        lake = Lake(LocalStore(tmp_path / name / "lake"))
        reg = Registry(f"sqlite:///{tmp_path / name / 'registry.db'}")
        spec = parse_spec({**doc, "input": str(site), "runner": name,
                           "runner_options": {"workers": 1} if name == "local" else {}, "partition_size": 3})
        out = run_pipeline(spec, lake, reg, progress=False, runner=runner)
        v = reg.open_version(out["output"])
        rows = pq.read_table(v.store.url(v.manifest.rejects["path"])[len("file://"):]).to_pylist()
        results[name] = (out, v, rows)
        reg.close()
    (out, v, rows), (rout, rv, _) = results["local"], results["ray"]
    assert rv.manifest.version == v.manifest.version
    assert {k: rout[k] for k in ("kept", "filtered", "duplicates")} == {k: out[k] for k in ("kept", "filtered", "duplicates")}
    # pages, the trap page, the short page, the book -- the SELECT page (> 5,000 words) cut at its
    # headings into parts of at most 2,000 words
    assert out["ingest"]["inputs"] == out["ingest"]["ingested"] == len(PAGES) + 3
    n = out["samples_in"]
    assert n == out["kept"] + sum(out["filtered"].values()) + out["duplicates"] > len(PAGES) + 3
    outcome = {r["key"]: (r["outcome"], r["stage"], r["reason"]) for r in rows}
    assert outcome["short"] == ("filtered", "interleaved_filter", "too_few_words")
    # two point releases share most of their change log: one is a near-duplicate of the other
    assert {outcome.get("releaselog-3_39_3"), outcome.get("releaselog-3_39_4")} & {
        ("duplicate", "dedupe_text", "duplicate")}
    docs = {s.key: s for s in v}
    traps = docs["traps"]
    # image_filter took the 1x1 pixel (and the banner-size logo) out of the document, kept the rest
    dropped = {d["reason"] for d in traps.meta["dropped_parts"]}
    assert dropped == {"too_small"} and len(traps.media) == 2  # the red figure and the lazy image
    # interleaved_filter removed the short text nodes (under 4 words), kept the others in order
    lines = [line for p in traps.content if isinstance(p, TextPart) for line in p.text.split("\n")]
    assert traps.meta["dropped_nodes"]["node_too_few_words"] >= 5
    assert not {"Delta", "Charlie paragraph.", "Bravo paragraph", "Gardening guide"} & set(lines)
    assert lines.index("Figure 1: the red one.") < lines.index("Echo, after a comment.")
    assert lines[0].startswith("Alpha paragraph")
    assert isinstance(traps.content[0], TextPart) and any(isinstance(p, MediaPart) for p in traps.content)
    assert "book" in docs and docs["book"].meta["document"]["format"] == "epub"
    sel = [s for k, s in sorted(docs.items()) if k.startswith("lang_select-p")]
    assert len(sel) >= 3 and all(s.meta["document"]["order_check"] == "ok" for s in sel)
    assert all(s.meta["document"]["words"] <= 2000 for s in sel)
    assert [s.meta["document"]["part"]["index"] for s in sel] == list(range(len(sel)))
