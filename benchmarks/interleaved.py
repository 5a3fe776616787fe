"""Interleaved-document extraction speed, beside the floor and the tool users compare with.

    python benchmarks/interleaved.py [--docs /usr/share/doc/sqlite3] [--books 8] [--repeat 3] [--json]

One process, one core. For the HTML pages of a documentation folder (Debian's SQLite manual by
default) and for EPUB books built from the same pages (``--books`` books, chapters in spine
order), and for one gzipped WARC crawl of the same pages with their images, it times:

- **mmlake**: ``datalake.html.document_sample`` -- DOM simplification, ordered text and image
  nodes, images read and probed, the order check against a second walk of the DOM, a Sample;
- **mmlake extraction alone**: ``extract_html`` only (no image reads, no order check, no Sample);
- **lxml parse + text** (the floor): ``lxml.html.document_fromstring(...).text_content()``;
- **trafilatura** (text only, what users compare with): ``trafilatura.extract(html)``, when the
  ``bench`` extra is installed.

Prints documents/s and MB/s (of HTML, EPUB or WARC bytes), medians of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def _books(docs: Path, files: list[Path], n: int, out: Path) -> list[Path]:
    """``n`` EPUBs, each with an equal share of the pages as chapters (and the images they use)."""
    per = max(1, len(files) // n)
    books = []
    for b in range(n):
        chunk = files[b * per:(b + 1) * per]
        path = out / f"book{b}.epub"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("mimetype", "application/epub+zip")
            z.writestr("META-INF/container.xml", '<?xml version="1.0"?><container version="1.0" xmlns="urn:oasis:'
                       'names:tc:opendocument:xmlns:container"><rootfiles><rootfile full-path="OEBPS/content.opf" '
                       'media-type="application/oebps-package+xml"/></rootfiles></container>')
            items, spine = [], []
            for i, f in enumerate(chunk):
                rel = f.relative_to(docs).as_posix()
                z.writestr(f"OEBPS/{rel}", f.read_bytes())
                items.append(f'<item id="c{i}" href="{rel}" media-type="application/xhtml+xml"/>')
                spine.append(f'<itemref idref="c{i}"/>')
            for img in (docs / "images").glob("*.gif"):
                z.writestr(f"OEBPS/images/{img.name}", img.read_bytes())
            z.writestr("OEBPS/content.opf", '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" '
                       f'version="3.0"><manifest>{"".join(items)}</manifest><spine>{"".join(spine)}</spine></package>')
        books.append(path)
    return books


def _time(fn: Callable[[], int], repeat: int) -> tuple[float, int]:
    runs = []
    n = 0
    for _ in range(repeat):
        t = time.perf_counter()
        n = fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs), n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", default="/usr/share/doc/sqlite3", help="a folder of HTML pages")
    ap.add_argument("--books", type=int, default=8, help="EPUB books to build from the pages")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args()

    import lxml.html

    from datalake.html import document_sample, epub_chapters, extract_html

    try:
        import trafilatura
    except ImportError:
        trafilatura = None
    docs = Path(args.docs)
    files = sorted(docs.rglob("*.html"))
    if not files:
        raise SystemExit(f"no .html files under {docs}")
    pages = [(f.relative_to(docs).as_posix(), f.read_bytes()) for f in files]
    html_mb = sum(len(b) for _, b in pages) / 1e6

    def read(p: str) -> bytes | None:
        q = docs / p
        return q.read_bytes() if q.is_file() else None

    def mm_html() -> int:
        for i, (rel, data) in enumerate(pages):
            document_sample(f"d{i}", [(rel, data)], read, source=rel)
        return len(pages)

    def mm_noorder() -> int:
        for _, data in pages:
            extract_html(data)
        return len(pages)

    def lxml_floor(items: list[bytes]) -> Callable[[], int]:
        def run() -> int:
            for data in items:
                lxml.html.document_fromstring(data).text_content()
            return len(items)
        return run

    def traf(items: list[bytes]) -> Callable[[], int]:
        def run() -> int:
            for data in items:
                trafilatura.extract(data.decode("utf-8", "replace"))
            return len(items)
        return run

    rows = []

    def row(source: str, tool: str, fn: Callable[[], int], mb: float, docs_n: int | None = None) -> None:
        t, n = _time(fn, args.repeat)
        n = docs_n or n
        rows.append({"source": source, "tool": tool, "docs": n, "seconds": round(t, 3),
                     "docs_per_s": round(n / t, 1), "mb_per_s": round(mb / t, 2)})

    src = f"HTML ({docs.name}, {len(pages)} pages, {html_mb:.1f} MB)"
    row(src, "mmlake (order checked)", mm_html, html_mb)
    row(src, "mmlake extraction alone (no images, no order check)", mm_noorder, html_mb)
    row(src, "lxml parse + text (floor)", lxml_floor([b for _, b in pages]), html_mb)
    if trafilatura is not None:
        row(src, "trafilatura.extract (text only)", traf([b for _, b in pages]), html_mb)
    with tempfile.TemporaryDirectory() as tmp:
        books = _books(docs, files, args.books, Path(tmp))
        blobs = [b.read_bytes() for b in books]
        epub_mb = sum(len(b) for b in blobs) / 1e6

        def mm_epub() -> int:
            for i, data in enumerate(blobs):
                chapters, rd = epub_chapters(data)
                document_sample(f"b{i}", chapters, rd, source=f"book{i}", fmt="epub")
            return len(blobs)

        chapters_all = [c for data in blobs for _, c in epub_chapters(data)[0]]

        def unzip_floor() -> int:
            for data in blobs:
                z = zipfile.ZipFile(io.BytesIO(data))
                for name in z.namelist():
                    if name.endswith(".html"):
                        lxml.html.document_fromstring(z.read(name)).text_content()
            return len(blobs)

        esrc = f"EPUB ({len(blobs)} books, {len(chapters_all)} chapters, {epub_mb:.1f} MB)"
        row(esrc, "mmlake (order checked)", mm_epub, epub_mb)
        row(esrc, "unzip + lxml parse + text (floor)", unzip_floor, epub_mb)
        if trafilatura is not None:
            row(esrc, "trafilatura.extract per chapter (text only)", traf(chapters_all), epub_mb, len(blobs))
        # one WARC of the same pages (gzip per record) with every image the pages use
        from urllib.parse import quote

        from warcio.statusandheaders import StatusAndHeaders
        from warcio.warcwriter import WARCWriter

        warc = Path(tmp) / "crawl.warc.gz"
        with open(warc, "wb") as fh:
            w = WARCWriter(fh, gzip=True)
            for rel, data in pages:
                hdr = StatusAndHeaders("200 OK", [("Content-Type", "text/html")], protocol="HTTP/1.1")
                w.write_record(w.create_warc_record(f"http://docs.example/{quote(rel)}", "response",
                                                    payload=io.BytesIO(data), http_headers=hdr))
            for img in sorted((docs / "images").rglob("*.gif")):
                hdr = StatusAndHeaders("200 OK", [("Content-Type", "image/gif")], protocol="HTTP/1.1")
                w.write_record(w.create_warc_record(f"http://docs.example/{img.relative_to(docs).as_posix()}",
                                                    "response", payload=io.BytesIO(img.read_bytes()), http_headers=hdr))
        warc_mb = warc.stat().st_size / 1e6
        from datalake.html import WarcImages, warc_pages

        def mm_warc() -> int:
            raw = warc.read_bytes()
            with open(warc, "rb") as fh:
                images = WarcImages(fh, lambda off, n: raw[off:off + n])
            k = 0
            with open(warc, "rb") as fh:
                for url, html, _off, _len in warc_pages(fh):
                    document_sample(f"w{k}", [(url, html)], images.read, source=url, fmt="warc",
                                    resolve=images.resolve)
                    k += 1
            return k

        def warc_floor() -> int:
            k = 0
            with open(warc, "rb") as fh:
                for _url, html, _off, _len in warc_pages(fh):
                    lxml.html.document_fromstring(html).text_content()
                    k += 1
            return k

        wsrc = f"WARC (1 crawl, {len(pages)} pages + images, {warc_mb:.1f} MB gzip)"
        row(wsrc, "mmlake (order checked)", mm_warc, warc_mb)
        row(wsrc, "warcio + lxml parse + text (floor)", warc_floor, warc_mb)
        if trafilatura is not None:
            def warc_traf() -> int:
                k = 0
                with open(warc, "rb") as fh:
                    for _url, html, _off, _len in warc_pages(fh):
                        trafilatura.extract(html.decode("utf-8", "replace"))
                        k += 1
                return k

            row(wsrc, "warcio + trafilatura.extract (text only)", warc_traf, warc_mb)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| source | tool | docs/s | MB/s | ratio to mmlake |\n|---|---|---:|---:|---:|")
    base = {r["source"]: r["docs_per_s"] for r in rows if r["tool"].startswith("mmlake (")}
    for r in rows:
        print(f"| {r['source']} | {r['tool']} | {r['docs_per_s']} | {r['mb_per_s']} | "
              f"{r['docs_per_s'] / base[r['source']]:.2f}x |")


if __name__ == "__main__":
    main()
