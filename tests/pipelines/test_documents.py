"""PDFs to long-document samples: text layer as ground truth, scanned pages through OCR."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from datalake.pdf import PdfError, render_pdf
from pipelines.ocr.quality import cer
from tests.pdfs import LINES, born_digital_pdf, scanned_pdf


def test_render_pdf_keeps_page_order_and_the_text_layer(tmp_path: Path) -> None:
    born_digital_pdf(tmp_path / "a.pdf")
    pages = render_pdf((tmp_path / "a.pdf").read_bytes(), dpi=100)
    assert len(pages) == 2 and (pages[0].width, pages[0].height) == (600, 300)
    for page, want in zip(pages, LINES, strict=True):
        assert page.text.split("\n") == want
        for poly, _ in page.lines:  # line boxes inside the page, in pixels
            assert all(0 <= x <= page.width and 0 <= y <= page.height for x, y in poly)
    scanned_pdf(tmp_path / "s.pdf")
    assert render_pdf((tmp_path / "s.pdf").read_bytes())[0].text == ""
    with pytest.raises(PdfError, match="unreadable_pdf"):
        render_pdf(b"%PDF-1.4 not really")


def test_pdf_folder_becomes_a_registered_long_document_dataset(tmp_path: Path) -> None:
    from mmlake.cli import main

    pdfs = tmp_path / "pdfs"
    pdfs.mkdir()
    born_digital_pdf(pdfs / "manual.pdf")
    truth = scanned_pdf(pdfs / "scan.pdf")
    (pdfs / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    runner = CliRunner(env={"MMLAKE_HOME": str(tmp_path / "home")})
    spec = Path(__file__).resolve().parents[2] / "pipelines" / "specs" / "pdf-documents.yaml"
    res = runner.invoke(main, ["run", str(spec), "--input", str(pdfs), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["kept"] == 2 and out["rejected"] == {"unreadable_pdf": 1}
    from mmlake.settings import load_settings

    lake = load_settings({"MMLAKE_HOME": str(tmp_path / "home")}).open_lake()
    docs = {s.key: s for s in lake.open_version("documents")}
    manual, scan = docs["manual"], docs["scan"]
    assert manual.kind == "interleaved" and [m.name for m in manual.media] == ["0.png", "1.png"]
    texts = [p.text for p in manual.content if hasattr(p, "text")]
    assert texts == ["\n".join(page) for page in LINES]  # pages in order, text layer as the text
    assert manual.meta["document"]["pages"] == 2 and manual.meta["document"]["token_estimate"] > 0
    assert all(p["cer_vs_text_layer"] <= 0.05 for p in manual.meta["ocr"].values())
    # the scanned page has no text layer: its text is the OCR text
    assert scan.meta["document"]["text_layer"] == [False]
    assert cer(scan.content[-1].text, truth) <= 0.02 and scan.meta["ocr"]["0.png"]["mean_confidence"] > 0.8
    from datalake.pdf import estimate_tokens

    image_only = estimate_tokens(0, [(scan.media[0].width, scan.media[0].height)])
    assert scan.meta["document"]["tokens_per_page"][0] >= image_only + len(truth) // 4 - 2  # OCR text counted
    # the registry has the document statistics the web registry charts
    res = runner.invoke(main, ["datasets", "show", "documents@1", "--json"])
    assert res.exit_code == 0, res.output
    st = json.loads(res.output)["stats"]
    assert st["documents"] == 2 and st["ocr_pages"] == 3
    assert dict(zip(st["pages"]["edges"], st["pages"]["counts"], strict=True))[1] == 1  # scan: one page
    assert dict(zip(st["pages"]["edges"], st["pages"]["counts"], strict=True))[2] == 1  # manual: two
    assert sum(st["page_tokens"]["counts"]) == 3 and sum(st["ocr_confidence"]["counts"]) == 3
    # per-page ocr samples: the text layer where there is one, the OCR text for the scan
    res = runner.invoke(main, ["documents", "pages", "documents@1", "--dataset", "pages", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert (out["inputs"], out["pages"], out["pages_without_text"], out["output"]) == (2, 3, 0, "pages@1")
    pages = {s.key: s for s in lake.open_version("pages")}
    assert sorted(pages) == ["manual-p0000", "manual-p0001", "scan-p0000"]
    p1 = pages["manual-p0001"]
    assert p1.kind == "ocr" and p1.content[-1].text == "\n".join(LINES[1]) and p1.meta["page"]["text_from"] == "text_layer"
    assert p1.blobs["0.png"] == manual.blobs["1.png"] and {a.media for a in p1.annotations} == {0}
    sp = pages["scan-p0000"]
    assert sp.meta["page"] == {"document": "scan", "index": 0, "pages": 1, "text_from": "ocr"}
    assert sp.content[-1].text == scan.meta["ocr"]["0.png"]["text"] and cer(sp.content[-1].text, truth) <= 0.02
    lineage = json.loads(runner.invoke(main, ["datasets", "lineage", "pages@1", "--json"]).output)
    assert "documents@1" in json.dumps(lineage)
    res = runner.invoke(main, ["documents", "pages", "nothing@1", "--dataset", "x"])
    assert res.exit_code == 2 and "nothing" in res.output
