"""The html-documents pipeline: HTML pages (the trap page and pages of the SQLite manual) and an
EPUB ingested as interleaved documents, then image_filter (a document loses a failing image,
not itself), interleaved_filter (text nodes removed by reason, documents outside the limits
filtered) and text dedupe -- the same version on the local and the Ray runner."""

from __future__ import annotations

import shutil
from collections import Counter
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
    # the node and image funnel of the kept documents is in the version's statistics (the registry charts it)
    want: Counter[str] = Counter()
    for s in docs.values():
        want.update({f"node: {r}": n for r, n in (s.meta.get("dropped_nodes") or {}).items() if n})
        want.update(f"image: {d['reason']}" for d in s.meta.get("dropped_parts") or ())
    assert v.manifest.stats["parts_dropped"] == dict(want) and want["image: too_small"] >= 1
    assert want["node: node_too_few_words"] >= 5


def test_images_repeated_across_documents_are_removed_alike_on_local_ray_and_spark(
        tmp_path: Path, ray_runner, spark_runner) -> None:  # type: ignore[no-untyped-def]
    """A site's logo (the SQLite manual's own 327x97 logo) on 4 of 6 pages, each page with its own
    real photo: with max_documents 3 the logo leaves every page, the photos stay, and Ray and
    Spark write the same version. (A page that is only the logo has no text: ingest already rejects it.)"""
    img = DOCS / "images"
    site = tmp_path / "site"
    site.mkdir()
    photos = ["drh1.jpg", "dan1.jpg", "joe1.jpg", "shane1.jpg", "chw.jpg", "loc.jpg"]
    for f in [*photos, "SQLite.gif"]:
        shutil.copy(img / f, site / f)
    for i, photo in enumerate(photos):
        logo = "<p><img src='SQLite.gif' alt='SQLite'></p>" if i < 4 else ""
        (site / f"p{i}.html").write_text(
            f"<html><body>{logo}<h1>Page {i} of the team</h1><p>This page tells the story of developer number {i} "
            f"and the work done on the library over many years.</p><figure><img src='{photo}'><figcaption>Portrait "
            f"number {i} of the team.</figcaption></figure><p>More words follow here about the project.</p></body>"
            "</html>")
    (site / "logo-only.html").write_text("<html><body><img src='SQLite.gif'></body></html>")
    doc = {"name": "rep", "input": str(site), "output": "rep", "ingest": {"kind": "interleaved"}, "partition_size": 3,
           "stages": [{"repeated_images": {"max_documents": 3}}, {"dedupe_exact": {}}]}
    results = {}
    for name, runner in (("local", None), ("ray", ray_runner), ("spark", spark_runner)):
        lake = Lake(LocalStore(tmp_path / name / "lake"))
        reg = Registry(f"sqlite:///{tmp_path / name / 'registry.db'}")
        spec = parse_spec({**doc, "runner": name, "runner_options": {"workers": 1} if name == "local" else {}})
        out = run_pipeline(spec, lake, reg, progress=False, runner=runner)
        results[name] = (out, {s.key: s for s in reg.open_version(out["output"])})
        reg.close()
    (out, docs) = results["local"]
    for other in ("ray", "spark"):
        oout, odocs = results[other]
        assert (oout["version"], oout["clusters"], set(odocs)) == (out["version"], out["clusters"], set(docs)), other
    assert out["clusters"]["repeated_images"] == {"repeated_images": 1, "documents_pruned": 4, "most_repeated": 4}
    assert out["filtered"] == {} and out["rejected"] == {"no_text": 1} and out["kept"] == 6
    logo = (site / "SQLite.gif").read_bytes()
    for i, photo in enumerate(photos):
        s = docs[f"p{i}"]
        assert [s.blobs[m.name] for m in s.media] == [(site / photo).read_bytes()]  # the photo, byte-identical
        assert logo not in s.blobs.values()
        assert [d["reason"] for d in s.meta.get("dropped_parts", [])] == (["repeated_image"] if i < 4 else [])
        assert isinstance(s.content[0], TextPart) and any(isinstance(p, MediaPart) for p in s.content)


def test_a_document_of_only_repeated_images_is_filtered_not_emptied() -> None:
    from datalake.sample import Media, Sample, Source
    from pipelines.stages.interleaved import image_digest, prune_images

    logo, photo = png(300, 100, (0, 0, 200)), png(300, 200, (0, 200, 0))
    both = Sample(key="d", kind="interleaved", source=Source("file:///d"), media=(
        Media("0.png", "image/png", 300, 100), Media("1.png", "image/png", 300, 200)),
        content=(MediaPart(0), MediaPart(1)), blobs={"0.png": logo, "1.png": photo})
    kept = prune_images(both, {image_digest(logo)}, "repeated_images")
    assert kept is not None and kept.blobs == {"1.png": photo} and kept.content == (MediaPart(0),)
    assert prune_images(both, {image_digest(logo), image_digest(photo)}, "repeated_images") is None
