"""Synthetic data beyond Latin text: CJK and handwriting fonts (read back by OCR), HTML tables
rendered by Chromium with exact cell boxes, and `mmlake synth` writing registered versions."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pipelines.ocr.engines import make_engine
from pipelines.ocr.quality import cer
from synth.text import caps_only, find_fonts, render_page


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


@pytest.fixture(scope="module")
def rapidocr():  # type: ignore[no-untyped-def]
    eng = make_engine("rapidocr")
    eng.load()
    return eng


def test_cjk_pages_are_written_without_spaces_and_read_back(rapidocr) -> None:  # type: ignore[no-untyped-def]
    """Chinese text (the bundled PP-OCR model reads it): CER <= 1 % on clean pages."""
    assert find_fonts()["cjk"], "no CJK font: run `make test` (it installs fonts-wqy-microhei)"
    errors, chars = 0.0, 0
    for i in range(2):
        page = render_page(4, i, size=(640, 240), font_size=26, augment=False, lines=3, script="cjk")
        assert " " not in page.text and all("\u4e00" <= ch <= "\u9fff" for ch in page.text.replace("\n", ""))
        assert "".join(w.text for w in page.words) == page.text.replace("\n", "")
        got = "\n".join(ln.text for ln in rapidocr(_pixels(page.jpeg)))
        errors += cer(got, page.text) * len(page.text)
        chars += len(page.text)
    assert errors / chars <= 0.01, errors / chars


def test_handwriting_fonts_and_capitals_only_fonts_get_truthful_transcripts(rapidocr) -> None:  # type: ignore[no-untyped-def]
    hand = find_fonts()["handwriting"]
    assert hand, "no handwriting font: run `make test` (it installs fonts-dancingscript ...)"
    assert not any(caps_only(f) for f in find_fonts()["latin"])  # text fonts have real lower case
    humor = [f for f in hand if "Humor" in f]
    if humor:  # Humor Sans draws lower case as small capitals: the transcript is upper case
        assert caps_only(humor[0])
        page = render_page(1, 0, size=(640, 160), font=humor[0], font_size=26, augment=False, lines=2,
                           script="handwriting")
        assert page.text == page.text.upper() and any(c.isalpha() for c in page.text)
    script = next(f for f in hand if "DancingScript-Regular" in f or "Comic" in f)
    page = render_page(1, 1, size=(640, 240), font=script, font_size=28, augment=False, lines=3,
                       script="handwriting")
    got = "\n".join(ln.text for ln in rapidocr(_pixels(page.jpeg)))
    assert cer(got, page.text) <= 0.05, (got, page.text)
    with pytest.raises(ValueError, match="script must be one of"):
        render_page(1, 0, script="klingon")


def test_html_tables_have_exact_cells_and_computed_answers(rapidocr) -> None:  # type: ignore[no-untyped-def]
    from synth.web import html_table_samples, table_html

    assert table_html(3, 1) == table_html(3, 1) and table_html(3, 1) != table_html(3, 2)
    samples = list(html_table_samples(range(3), seed=3))
    again = list(html_table_samples([1], seed=3))
    assert again[0].blobs["0.png"] == samples[1].blobs["0.png"]  # same page, same pixels
    for s in samples:
        truth = s.meta["truth"]
        cells = [a for a in s.annotations if a.role == "table_cell"]
        assert len(cells) == len(truth["columns"]) * (len(truth["rows"]) + 1)
        q, ans = s.messages[0].content[1].text, s.messages[1].content[0].text
        rows, cols = truth["rows"], truth["columns"]
        if q.startswith("What is the total"):
            j = next(k for k, c in enumerate(cols) if f"the {c} column" in q)
            assert ans == str(sum(r[j] for r in rows))
        elif q.startswith("What is the"):
            r = next(r for r in rows if f"for {r[0]}?" in q)
            assert ans in [str(v) for v in r[1:]]
        assert ans == truth["answer"]
        # every value OCR finds lies inside the box of the cell that holds it
        by_text: dict[str, list[tuple[float, ...]]] = {}
        for a in cells:
            by_text.setdefault(str(a.text), []).append(a.xyxy)  # type: ignore[arg-type]
        found = 0
        for ln in rapidocr(_pixels(s.blobs["0.png"])):
            if ln.text in by_text:
                cx, cy = np.mean(np.asarray(ln.polygon), axis=0)
                assert any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in by_text[ln.text]), ln.text
                found += 1
        assert found >= len(cells) * 0.8, (found, len(cells))


def test_synth_cli_registers_a_deterministic_version_and_skips_what_cannot_run(tmp_path: Path) -> None:
    from mmlake.cli import main
    from mmlake.settings import load_settings

    env = {"MMLAKE_HOME": str(tmp_path / "home")}
    runner = CliRunner(env=env)
    res = runner.invoke(main, ["synth", "--list", "--json"])
    assert res.exit_code == 0 and set(json.loads(res.output)) >= {"text", "text-cjk", "handwriting", "html-table"}
    args = ["synth", "text", "handwriting", "geometry", "html-table", "--dataset", "mix", "-n", "8", "--seed", "5", "--json"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["output"] == "mix@1" and out["samples"] == 8 and out["skipped"] == {}
    assert out["per_generator"] == {"text": 2, "handwriting": 2, "geometry": 2, "html-table": 2}
    settings = load_settings(env)
    reg = settings.registry_client()
    run = reg.get_run(out["run"])
    assert run.kind == "synth" and run.status == "succeeded" and run.counts["kept"] == 8
    v = settings.open_lake().open_version("mix")
    samples = list(v)
    assert len(samples) == 8 and all(s.meta["synthetic"] for s in samples)
    assert reg.get_version("mix@1").stats["synthetic"] == 8
    # the same call writes the same content: the registry returns the same version
    res = runner.invoke(main, args)
    assert json.loads(res.output)["output"] == "mix@1"
    # no handwriting font here: skipped with the reason, the rest still runs
    res = CliRunner(env={**env, "MMLAKE_FONT_DIRS": str(tmp_path / "nofonts")}).invoke(
        main, ["synth", "handwriting", "geometry", "--dataset", "geo", "-n", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["per_generator"] == {"geometry": 3} and "no handwriting font" in out["skipped"]["handwriting"]
    assert "fonts-dancingscript" in reg.get_run(out["run"]).counts["skipped_generators"]["handwriting"]
    res = CliRunner(env={**env, "MMLAKE_FONT_DIRS": ""}).invoke(main, ["synth", "handwriting", "--dataset", "h"])
    assert res.exit_code == 2 and "no generator can run here" in res.output
    res = runner.invoke(main, ["synth", "poetry", "--dataset", "p"])
    assert res.exit_code == 2 and "unknown generator" in res.output
