"""View models of the web registry: every annotation kind drawn, text escaped, lineage laid out."""

from __future__ import annotations

import re

from dashboards.charts import bar_chart, edge_labels, funnel_chart, histogram_chart
from registry.types import LineageGraph
from registry.web import funnel_from_counts
from registry.web.views import lineage_svg, sample_view


def test_every_annotation_kind_is_drawn_and_text_is_escaped() -> None:
    record = {
        "key": "k", "kind": "agent", "source": {"uri": "x"},
        "media": [{"name": "0.png", "mime": "image/png", "width": 200, "height": 100},
                  {"name": "mp4", "mime": "video/mp4", "width": 64, "height": 64, "duration_s": 10.0}],
        "content": [{"text": "tap {point:1} on <b>{box:0}</b>"}, {"media": 0}, {"text": "then watch"}, {"media": 1}],
        "annotations": [
            {"media": 0, "type": "box", "xyxy": [10, 20, 60, 40], "role": "ui_element", "label": "<script>x</script>"},
            {"media": 0, "type": "point", "xy": [30, 30], "role": "action", "action": "click"},
            {"media": 0, "type": "polygon", "points": [[0, 0], [50, 0], [50, 10]], "role": "ocr_line", "text": "Hello"},
            {"media": 1, "type": "segment", "t0": 2.0, "t1": 5.0, "text": "a dog runs"},
        ],
    }
    v = sample_view(record, lambda name: f"/m/{name}")
    img, vid = v["media"]
    svg = str(img["overlay"])
    assert svg.count('class="ann-box"') == 1 and svg.count('class="ann-point"') == 1 and svg.count('class="ann-polygon"') == 1
    assert 'x="10" y="20" width="50" height="20"' in svg and 'cx="30" cy="30"' in svg and 'points="0,0 50,0 50,10"' in svg
    assert "&lt;script&gt;" in svg and "<script>" not in svg
    assert "Hello" in svg and "click" in svg and 'viewBox="0 0 200 100"' in svg
    assert vid["is_video"] and 'class="seg"' in str(vid["timeline"]) and 'x="120.0"' in str(vid["timeline"])
    text = str(v["parts"][0]["text"])
    assert "&lt;b&gt;" in text and text.count('class="ph"') == 2 and "box 0: &lt;script&gt;x&lt;/script&gt;" in text
    assert [("media" in p) for p in v["parts"]] == [False, True, False, True]  # interleaved order kept


def test_lineage_layout_puts_upstream_left_and_links_every_node() -> None:
    g = LineageGraph("v:b@1", [
        {"id": "v:a@1", "type": "version", "ref": "a@1", "samples": 1, "state": "active"},
        {"id": "r:1", "type": "run", "run_id": "1", "name": "clean", "kind": "pipeline", "status": "succeeded"},
        {"id": "v:b@1", "type": "version", "ref": "b@1", "samples": 1, "state": "active"},
        {"id": "r:2", "type": "run", "run_id": "2", "name": "<mix>", "kind": "pipeline", "status": "failed"},
        {"id": "v:c@1", "type": "version", "ref": "c@1", "samples": 1, "state": "deprecated"},
    ], [("v:a@1", "r:1"), ("r:1", "v:b@1"), ("v:b@1", "r:2"), ("r:2", "v:c@1")])
    svg = str(lineage_svg(g, lambda r: f"/v/{r}", lambda r: f"/r/{r}"))
    xs = {m.group(1): float(m.group(2)) for m in re.finditer(r'data-node="([^"]+)"><g[^>]*><rect x="([\d.]+)"', svg)}
    assert xs["v:a@1"] < xs["r:1"] < xs["v:b@1"] < xs["r:2"] < xs["v:c@1"]
    assert svg.count("<a href=") == 5 and 'href="/r/2"' in svg and "&lt;mix&gt;" in svg
    assert svg.count('class="edge"') == 4 and 'class="node version root"' in svg


def test_charts_and_funnel() -> None:
    assert edge_labels([0, 64, 128]) == ["0–64", "64–128", "≥128"]
    assert edge_labels([0, 1024], "bytes") == ["0 B–1.0 KB", "≥1.0 KB"]
    assert edge_labels([1, 2, 3, 5, 9], "count") == ["1", "2", "3–4", "5–8", "≥9"]
    h = str(histogram_chart({"edges": [0, 64, 128, 256], "counts": [0, 3, 5, 0]}, "w", chart_id="c"))
    assert re.findall(r'data-value="([\d.]+)"', h) == ["3", "5"]  # empty outer bins trimmed
    assert "no data" in str(bar_chart([], [], "empty"))
    # bars fitted to the data: long documents and short captions in one version, at most 16 bars
    from dashboards.charts import fit_bins
    from datalake.stats import TEXT_EDGES, Histogram

    text = Histogram(TEXT_EDGES)
    for v in (1200, 3000, 3100, 90_000, 400_000, 2_500_000):
        text.add(v)
    edges, counts = fit_bins(text.edges, text.counts)
    assert sum(counts) == 6 and counts[0] and counts[-1] and len(counts) <= 16 and len(edges) == len(counts) + 1
    assert edges[0] <= 1200 < edges[1] and edges[-2] <= 2_500_000 < edges[-1]
    narrow = Histogram(TEXT_EDGES)  # all between 1,000 and 1,500: one fine bin, not one of a factor of 4
    for v in range(1000, 1500, 10):
        narrow.add(v)
    assert fit_bins(narrow.edges, narrow.counts) == ([1000, 1500], [50])
    many = fit_bins(list(range(101)), [1] * 100)  # 100 bins join 7 at a time into 15 bars, none lost
    assert len(many[1]) == 15 and sum(many[1]) == 100 and many[0][-1] == 100
    assert edge_labels([1000, 1500, 20000, 3_000_000]) == ["1k–1.5k", "1.5k–20k", "20k–3M", "≥3M"]
    steps = funnel_from_counts({"inputs": 10, "rejected": {"a": 1, "b": 3}, "filtered": {"small": 2}, "duplicates": 1,
                                "kept": 3})
    assert steps == [("inputs", 10), ("rejected: b", 3), ("rejected: a", 1), ("filtered: small", 2), ("duplicates", 1),
                     ("kept", 3)]
    assert str(funnel_chart(steps, "f")).count('class="bar"') == 6
    # a pipeline run counts its inputs as samples_in: the funnel still starts with them
    piped = funnel_from_counts({"samples_in": 12, "kept": 7, "filtered": {"static": 1}, "duplicates": 1,
                                "rejected": {"truncated_video": 3}})
    assert piped[0] == ("inputs", 12) and piped[-1] == ("kept", 7)
    assert sum(n for _, n in piped[1:-1]) + piped[-1][1] == piped[0][1]
    assert "&lt;x&gt;" in str(bar_chart(["<x>"], [1], "<t>"))


def test_thumbnails_are_small_and_bounded_and_long_documents_show_a_page_range() -> None:
    import io

    from PIL import Image

    from registry.api import ThumbnailCache, make_thumbnail
    from tests.realdata import photo_paths

    photo = next(p for p in photo_paths() if p.name == "astronaut.png").read_bytes()
    small, mime = make_thumbnail(photo, "image/png", 128)
    assert mime == "image/jpeg" and Image.open(io.BytesIO(small)).size == (128, 128) and len(small) < len(photo) / 10
    cache = ThumbnailCache(3 * len(small))
    for k in range(10):
        cache.put(k, (small, mime))
    assert cache.bytes <= 3 * len(small) and cache.get(9) is not None and cache.get(0) is None
    record = {"key": "doc", "kind": "interleaved", "source": {"uri": "x"},
              "media": [{"name": f"{i}.png", "mime": "image/png", "width": 100, "height": 140} for i in range(30)],
              "content": [p for i in range(30) for p in ({"media": i}, {"text": f"page {i} text"})],
              "annotations": [{"media": i, "type": "box", "xyxy": [1, 1, 9, 9], "role": "layout_block"} for i in range(30)]}
    v = sample_view(record, lambda n: f"/m/{n}", thumb=320, media_range=(10, 20))
    shown = [p["media"] for p in v["parts"] if "media" in p]
    texts = [str(p["text"]) for p in v["parts"] if "text" in p]
    assert shown == list(range(10, 20)) and texts[0] == "page 10 text" and len(texts) == 10
    assert v["hidden_media"] == 20 and v["media"][10]["url"] == "/m/10.png?thumb=320"
    assert v["media"][10]["full_url"] == "/m/10.png"
