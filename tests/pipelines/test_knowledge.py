"""Synthetic knowledge data: answers computed from the generating data, samples valid and
deterministic, and the rendered content readable (OCR finds the table's values)."""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image

from synth.knowledge import chart_sample, geometry_sample, knowledge_samples, table_sample


def _answer(s):  # noqa: ANN001, ANN202
    return s.messages[-1].content[0].text


def test_geometry_answers_follow_from_the_sides() -> None:
    shapes = set()
    for i in range(30):
        s = geometry_sample(0, i)
        t = s.meta["truth"]
        shapes.add(t["shape"])
        if t["shape"] == "circle":
            r = t["radius"]
            assert _answer(s) in (f"{math.pi * r * r:.2f}", f"{2 * math.pi * r:.2f}", str(2 * r))
            continue
        if t["shape"] == "polygon":
            n, side = t["sides"], t["side"]
            assert _answer(s) in (str(n * side), f"{180 * (n - 2) / n:.1f}", str(n))
            continue
        a, b, c = t["sides"]["BC"], t["sides"]["CA"], t["sides"]["AB"]
        p = (a + b + c) / 2
        assert math.isclose(t["area"], math.sqrt(p * (p - a) * (p - b) * (p - c)))
        # the angles of the triangle add up to 180 degrees (law of cosines at B and C too)
        ang_b = math.degrees(math.acos((a * a + c * c - b * b) / (2 * a * c)))
        ang_c = math.degrees(math.acos((a * a + b * b - c * c) / (2 * a * b)))
        assert math.isclose(t["angle_A"] + ang_b + ang_c, 180.0, abs_tol=1e-9)
        assert _answer(s) in (f"{t['angle_A']:.1f}", f"{t['area']:.2f}", str(a + b + c))
        assert s.kind == "knowledge" and s.meta["synthetic"] is True
    assert shapes == {"triangle", "circle", "polygon"}


def test_questions_are_answerable_from_the_image_and_never_tied() -> None:
    from synth.knowledge import _pie_labels

    pies = 0
    for i in range(80):
        s = chart_sample(5, i)
        t, q, ans = s.meta["truth"], s.messages[0].content[-1].text, _answer(s)
        assert len(set(t["values"])) == len(t["values"])  # no tied largest/smallest
        if t["chart"] == "pie":
            pies += 1
            shares = _pie_labels(t["values"])
            assert len(set(shares)) == len(shares)
            assert "value" not in q  # the pie shows shares only: no raw-value questions
            if "percentage points" in q:
                assert int(ans) == int(max(shares, key=lambda x: int(x[:-1]))[:-1]) - int(
                    min(shares, key=lambda x: int(x[:-1]))[:-1])
            elif "share of the whole" in q:
                assert ans in shares
    assert pies >= 10
    for i in range(40):
        rows = table_sample(6, i).meta["truth"]["rows"]
        totals = [sum(r[1:]) for r in rows]
        assert totals.count(max(totals)) == 1


def test_the_evidence_check_reads_each_figure_and_drops_the_illegible(tmp_path) -> None:
    from datalake import Lake
    from pipelines.ocr.engines import make_engine
    from registry.service import Registry
    from synth.knowledge import evidence_visible
    from synth.run import run_synth

    eng = make_engine("rapidocr")
    eng.load()
    s = table_sample(3, 1)
    assert evidence_visible(s, eng) == (True, [])
    tiny = s.__class__(**{**{f: getattr(s, f) for f in ("key", "kind", "source", "media", "messages", "annotations")},
                          "meta": {**s.meta, "truth": {**s.meta["truth"], "evidence": ["not-on-the-figure-42"]}},
                          "blobs": s.blobs})
    assert evidence_visible(tiny, eng) == (False, ["not-on-the-figure-42"])
    reg = Registry(f"sqlite:///{tmp_path / 'r.db'}")
    res = run_synth(reg, Lake.open(str(tmp_path / "lake")), ["chart", "table"], "kq", 12, seed=2, progress=False,
                    verify_evidence=True)
    assert res.samples + sum(res.rejected.values()) == 12 and res.samples >= 6


def test_chart_and_table_answers_are_computed_from_their_data() -> None:
    for i in range(8):
        s = chart_sample(1, i)
        t = s.meta["truth"]
        labels, values = t["labels"], t["values"]
        q, ans = s.messages[0].content[-1].text, _answer(s)
        if "largest" in q:
            assert ans == labels[int(np.argmax(values))]
        elif "smallest" in q:
            assert ans == labels[int(np.argmin(values))]
        elif "difference" in q:
            assert int(ans) == max(values) - min(values)
        elif "share of the whole" in q or "percentage points" in q:
            assert t["chart"] == "pie"
        else:
            assert ans in ("increasing", "decreasing", "mixed")
        im = Image.open(io.BytesIO(s.blobs["0.png"]))
        assert im.size == (s.media[0].width, s.media[0].height)
    for i in range(8):
        s = table_sample(2, i)
        rows, ans, q = s.meta["truth"]["rows"], _answer(s), s.messages[0].content[-1].text
        if q.startswith("What is the total of column"):
            col = ["Q1", "Q2", "Q3"].index(q.rsplit(" ", 1)[1].rstrip("?")) + 1
            assert int(ans) == sum(r[col] for r in rows)
        elif q.startswith("Which item"):
            assert ans == max(rows, key=lambda r: sum(r[1:]))[0]
        else:
            assert any(str(v) == ans for r in rows for v in r[1:])


def test_generators_are_deterministic_and_ocr_reads_the_table() -> None:
    a = knowledge_samples(6, seed=4)
    b = knowledge_samples(6, seed=4)
    assert [s.blobs["0.png"] for s in a] == [s.blobs["0.png"] for s in b]
    assert [s.key for s in a][:3] == ["geometry000000", "chart000001", "table000002"]
    from pipelines.ocr.engines import make_engine

    s = table_sample(3, 0)
    lines = make_engine("rapidocr")(np.asarray(Image.open(io.BytesIO(s.blobs["0.png"])).convert("RGB")))
    seen = " ".join(ln.text for ln in lines)
    cells = [str(v) for r in s.meta["truth"]["rows"] for v in r]
    assert sum(c in seen for c in cells) >= 0.8 * len(cells)
