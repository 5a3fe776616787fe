"""HTML pages and EPUB books to interleaved documents (``mmlake ingest --kind interleaved``):
page order kept and verified, images byte-identical to their files, every trap of real pages
(lazy images, srcset, pictures, figures and tables, inline SVG, absolute and relative paths,
missing and remote images, boilerplate, hidden nodes) handled and counted; the SQLite manual
(Debian's sqlite3-doc) end to end."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from datalake import Lake, LocalStore
from datalake.html import HtmlError, check_order, document_sample, epub_chapters, extract_html
from datalake.ingest import IngestConfig, ingest
from datalake.sample import MediaPart, TextPart

DOCS = Path("/usr/share/doc/sqlite3")


def png(w: int, h: int, colour: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), colour).save(buf, "PNG")
    return buf.getvalue()


TRAPS = """<!doctype html><html><head><title>Traps</title><style>p{color:red}</style>
<script>document.write("no")</script></head><body>
<nav><a href="/">Home</a> <a href="/docs">Docs</a></nav>
<header class="site-header"><img src="/img/logo.png" alt="logo"></header>
<div class="cookie-banner">We use cookies. <button>OK</button></div>
<main><h1>Gardening guide</h1>
<p>Alpha paragraph before the first image, with <b>bold</b> and <a href="x.html">a link</a>.</p>
<figure><img src="../pages/img/a.png" alt="a red square"><figcaption>Figure 1: the red one.</figcaption></figure>
<p>Bravo paragraph <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" data-src="img/lazy.png" alt="lazy"> inside the text.</p>
<picture><source srcset="img/small.png 200w, img/big.png 800w"><img src="img/small.png" alt="picture"></picture>
<p>Charlie paragraph.</p>
<table><tr><td>cell one</td><td><img src="/img/cell.png" alt="in a cell"></td><td>cell three</td></tr></table>
<svg width="10" height="10"><circle r="4"/></svg>
<p hidden>Hidden text must not appear.</p><p style="display: none">Neither this.</p>
<p>Delta <img src="img/missing.png" alt="gone"> <img src="https://cdn.example.com/x.png"> <img src="img/pixel.gif"></p>
<pre>def f():
    return 1</pre>
<!-- secret remark --> <p>Echo, after a comment. <img src="/img/logo.png" alt="logo again"></p>
</main>
<footer>Copyright 2026 Example Corp. All rights reserved.</footer>
<div id="sidebar"><p>Related posts</p></div>
</body></html>"""


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "pages" / "img").mkdir(parents=True)
    (root / "img").mkdir()
    files = {"pages/img/a.png": png(300, 200, (200, 0, 0)), "pages/img/lazy.png": png(320, 240, (0, 150, 0)),
             "pages/img/small.png": png(200, 150, (0, 0, 200)), "pages/img/big.png": png(800, 600, (0, 0, 220)),
             "img/cell.png": png(160, 160, (120, 120, 0)), "img/logo.png": png(180, 60, (9, 9, 9)),
             "pages/img/pixel.gif": b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00"
                                    b"\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"}
    for rel, data in files.items():
        (root / rel).write_bytes(data)
    (root / "pages" / "traps.html").write_text(TRAPS)
    return root


def _read(root: Path):  # type: ignore[no-untyped-def]
    return lambda p: (root / p).read_bytes() if (root / p).is_file() else None


def _flat(s) -> list[str]:  # type: ignore[no-untyped-def]
    return [f"<img {s.meta['document']['images'][p.media]['src']}>" if isinstance(p, MediaPart) else p.text
            for p in s.content]


def test_traps_in_page_order_with_original_bytes(site: Path) -> None:
    s = document_sample("traps", [("pages/traps.html", (site / "pages/traps.html").read_bytes())], _read(site),
                        source="file:///traps.html")
    text = "\n".join(p.text for p in s.content if isinstance(p, TextPart))
    flat = "\n".join(_flat(s))
    # boilerplate, scripts, styles, hidden nodes and the nav/header/footer/sidebar are gone
    for gone in ("document.write", "color:red", "Home", "cookies", "Hidden text", "Neither this", "Copyright",
                 "Related posts", "secret remark"):
        assert gone not in text, gone
    # the order of the page: text, figure image, its caption, lazy image inside the paragraph, the
    # largest srcset candidate of the picture, the image in the table cell between its cells ...
    order = ["Gardening guide", "Alpha paragraph", "<img pages/img/a.png>", "Figure 1: the red one.",
             "Bravo paragraph", "<img pages/img/lazy.png>", "inside the text.", "<img pages/img/big.png>",
             "Charlie paragraph.", "cell one", "<img img/cell.png>", "cell three", "Delta",
             "<img pages/img/pixel.gif>", "def f():\n    return 1", "Echo, after a comment.", "<img img/logo.png>"]
    at = [flat.find(x) for x in order]
    assert all(i >= 0 for i in at), [x for x, i in zip(order, at, strict=True) if i < 0]
    assert at == sorted(at), flat
    # images: original bytes, one media per distinct image; what could not be had is counted
    for m, info in zip(s.media, s.meta["document"]["images"], strict=True):
        assert hashlib.sha256(s.blobs[m.name]).hexdigest() == info["sha256"]
        assert s.blobs[m.name] == (site / info["src"]).read_bytes()
    assert s.meta["document"]["dropped_images"] == {"inline_svg": 1, "missing_image": 1, "remote_image": 1}
    assert s.meta["document"]["order_check"] == "ok" and s.meta["document"]["title"] == "Traps"
    assert s.meta["document"]["token_estimate"] > s.meta["document"]["words"] // 2


def test_order_check_catches_a_moved_image_and_a_reordered_text() -> None:
    html = TRAPS.encode()
    ex = extract_html(html)
    parts = [(k, v.split("\n")[-1] if k == "image" else v) for k, v, _ in ex.nodes]
    assert check_order(html, parts) is None
    img = next(i for i, p in enumerate(parts) if p[0] == "image")
    moved = parts[:img] + parts[img + 1:img + 3] + [parts[img]] + parts[img + 3:]
    why = check_order(html, moved)
    assert why is not None and "not found after" in why
    texts = [i for i, p in enumerate(parts) if p[0] == "text"]
    swapped = list(parts)
    swapped[texts[1]], swapped[texts[2]] = swapped[texts[2]], swapped[texts[1]]
    assert check_order(html, swapped) is not None


def _epub(path: Path) -> None:
    """A two-chapter EPUB whose spine order differs from the file names' order, with an image."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mimetype", "application/epub+zip")
        z.writestr("META-INF/container.xml", '<?xml version="1.0"?><container version="1.0" '
                   'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                   '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
                   "</rootfiles></container>")
        z.writestr("OEBPS/content.opf", '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" '
                   'version="3.0"><manifest><item id="c1" href="text/b-first.xhtml" media-type="application/xhtml+xml"/>'
                   '<item id="c2" href="text/a-second.xhtml" media-type="application/xhtml+xml"/>'
                   '<item id="i" href="images/map.png" media-type="image/png"/></manifest>'
                   '<spine><itemref idref="c1"/><itemref idref="c2"/></spine></package>')
        chap = ('<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
                "<title>{t}</title></head><body><h1>{t}</h1><p>{p}</p>{img}</body></html>")
        z.writestr("OEBPS/text/b-first.xhtml", chap.format(t="Chapter One", p="It begins on a quiet morning.",
                                                            img='<img src="../images/map.png" alt="map"/>'))
        z.writestr("OEBPS/text/a-second.xhtml", chap.format(t="Chapter Two", p="The journey goes on.", img=""))
        z.writestr("OEBPS/images/map.png", png(400, 300, (10, 90, 200)))


def test_ingest_html_folder_and_epub(site: Path, tmp_path: Path) -> None:
    _epub(site / "book.epub")
    (site / "empty.html").write_text("<html><body><nav>only navigation</nav><script>x()</script></body></html>")
    lake = Lake(LocalStore(tmp_path / "lake"))
    res = ingest(str(site), lake, IngestConfig("docs", kind="interleaved"), progress=False)
    assert res.inputs == 3 and res.ingested == 2 and res.rejected == {"no_text": 1}
    v = lake.open_version("docs")
    by_key = {s.key: s for s in v}
    book = by_key["book"]
    assert book.kind == "interleaved" and book.meta["document"]["format"] == "epub"
    assert [c["title"] for c in book.meta["document"]["chapters"]] == ["Chapter One", "Chapter Two"]  # spine order
    assert _flat(book) == ["Chapter One\nIt begins on a quiet morning.", "<img OEBPS/images/map.png>",
                           "Chapter Two\nThe journey goes on."]
    assert by_key["pages-traps"].meta["document"]["dropped_images"]["missing_image"] == 1
    with pytest.raises(HtmlError, match="spine"):
        epub_chapters(_zip_without_spine())
    # without --kind interleaved, an HTML folder says what to do
    res = ingest(str(site), lake, IngestConfig("docs2", kind="caption", allow_empty=True), progress=False)
    assert res.rejected.get("unsupported_format") and res.ingested == 0


def _zip_without_spine() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("META-INF/container.xml", '<container xmlns="urn:oasis:names:tc:opendocument:xmlns:container">'
                   '<rootfiles><rootfile full-path="c.opf"/></rootfiles></container>')
        z.writestr("c.opf", '<package xmlns="http://www.idpf.org/2007/opf"><manifest/><spine/></package>')
    return buf.getvalue()


def test_sqlite_manual_every_page_in_dom_order_images_byte_identical(tmp_path: Path) -> None:
    assert DOCS.is_dir(), "apt-get install sqlite3-doc (make setup installs it)"
    lake = Lake(LocalStore(tmp_path / "lake"))
    res = ingest(str(DOCS), lake, IngestConfig("sqlite-docs", kind="interleaved", workers=2), progress=False)
    pages = len(list(DOCS.rglob("*.html")))
    assert res.inputs == pages > 700 and res.ingested == pages, res.rejected  # every page passed its order check
    v = lake.open_version("sqlite-docs")
    words = images = 0
    for s in v:
        d = s.meta["document"]
        assert d["order_check"] == "ok"
        words += d["words"]
        for m, info in zip(s.media, d["images"], strict=True):
            images += 1
            assert s.blobs[m.name] == (DOCS / info["src"]).read_bytes()
    assert words > 500_000 and images >= pages  # the manual's text; every page has at least its banner
    lang = next(s for s in v if s.key == "lang_select")
    text = "\n".join(p.text for p in lang.content if isinstance(p, TextPart))
    # the table of contents first, then each heading above its own section's text
    assert text.index("► Table Of Contents") < text.rindex("1. Overview") < text.index(
        "The SELECT statement is used to query") < text.rindex("2. Simple Select Processing") < text.index(
        "The core of a SELECT statement is")


def _warc(path: Path) -> None:
    """A small crawl: two pages, the images of the first (one relative, one absolute path), a
    page image the crawl did not capture, a 404, and a CSS record."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    page1 = ("<html><head><title>Crawled</title></head><body><nav>menu</nav><p>First crawled paragraph.</p>"
             '<img src="img/a.png" alt="a"><p>Between the two images.</p><img src="/static/b.png">'
             '<img src="https://cdn.example.net/never.png"><p>Last words of the page.</p></body></html>')
    page2 = "<html><body><h1>Second page</h1><p>Only text lives here, no images at all.</p></body></html>"
    with open(path, "wb") as fh:
        w = WARCWriter(fh, gzip=True)
        for url, ctype, body, status in (
                ("http://example.org/docs/page.html", "text/html; charset=utf-8", page1.encode(), "200 OK"),
                ("http://example.org/static/site.css", "text/css", b"p{}", "200 OK"),
                ("http://example.org/docs/img/a.png", "image/png", png(300, 200, (200, 0, 0)), "200 OK"),
                ("http://example.org/static/b.png", "image/png", png(320, 240, (0, 0, 200)), "200 OK"),
                ("http://example.org/gone.html", "text/html", b"<p>not found</p>", "404 Not Found"),
                ("http://example.org/docs/two.html", "text/html", page2.encode(), "200 OK")):
            headers = StatusAndHeaders(status, [("Content-Type", ctype)], protocol="HTTP/1.1")
            w.write_record(w.create_warc_record(url, "response", payload=io.BytesIO(body), http_headers=headers))


def test_ingest_warc_pages_with_their_images(tmp_path: Path) -> None:
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    _warc(crawl / "crawl.warc.gz")
    lake = Lake(LocalStore(tmp_path / "lake"))
    res = ingest(str(crawl), lake, IngestConfig("crawl", kind="interleaved", workers=2), progress=False)
    assert res.ingested == 2 and res.rejected == {}  # the two 200 HTML records; the 404 is not a page
    docs = {s.key: s for s in lake.open_version("crawl")}
    by_url = {s.meta["document"]["url"]: s for s in docs.values()}
    page = by_url["http://example.org/docs/page.html"]
    d = page.meta["document"]
    assert d["format"] == "warc" and d["url"] == "http://example.org/docs/page.html"
    assert d["warc"]["file"] == "crawl.warc.gz" and d["warc"]["length"] > 0 and "#offset=" in page.source.uri
    assert _flat(page) == ["First crawled paragraph.", "<img http://example.org/docs/img/a.png>",
                           "Between the two images.", "<img http://example.org/static/b.png>", "Last words of the page."]
    assert d["dropped_images"] == {"missing_image": 1}  # never captured; nothing is downloaded
    assert Image.open(io.BytesIO(page.blobs[page.media[1].name])).size == (320, 240)
    # the record pointer reads the page back from the WARC
    from datalake.html import warc_record_payload

    raw = (crawl / "crawl.warc.gz").read_bytes()[d["warc"]["offset"]:d["warc"]["offset"] + d["warc"]["length"]]
    assert b"First crawled paragraph." in warc_record_payload(raw)
    assert "Only text lives here" in by_url["http://example.org/docs/two.html"].content[0].text  # type: ignore[union-attr]


def test_long_document_split_at_headings_loses_nothing() -> None:
    """The SQLite SELECT page (> 5,000 words) with split_words=1500: parts cut before headings,
    none over the limit unless one paragraph is, and together exactly the whole document."""
    from datalake.html import _HEADINGS

    raw = (DOCS / "lang_select.html").read_bytes()
    read = _read(DOCS)
    whole = document_sample("sel", [("lang_select.html", raw)], read, source="x")
    parts = document_sample("sel", [("lang_select.html", raw)], read, source="x", split_words=1500)
    assert isinstance(parts, list) and len(parts) >= 4
    assert [p.key for p in parts] == [f"sel-p{j:02d}" for j in range(len(parts))]
    lines = [x for s in parts for p in s.content if isinstance(p, TextPart) for x in p.text.split("\n")]
    assert lines == [x for p in whole.content if isinstance(p, TextPart) for x in p.text.split("\n")]
    assert sum(p.meta["document"]["words"] for p in parts) == whole.meta["document"]["words"]
    headings = {t for _k, t, tag in extract_html(raw).nodes if tag in _HEADINGS}
    for j, p in enumerate(parts):
        d = p.meta["document"]
        assert d["part"] == {"index": j, "of": len(parts), "nodes": d["part"]["nodes"], "split_at": "headings"}
        assert 0 < d["words"] <= 1500  # no paragraph of this page is longer than the limit
        if j:  # every later part begins at a section heading
            first = next(q for q in p.content if isinstance(q, TextPart)).text.split("\n")[0]
            assert first in headings, first
