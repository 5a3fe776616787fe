"""HTML pages and EPUB books to interleaved documents, in the order of the source DOM.

OBELICS-style extraction, not text-first: the DOM is simplified (scripts, styles, navigation,
headers, footers, asides, forms, hidden nodes, comments and cookie/share/sidebar boilerplate
go), then walked in document order into an ordered list of text blocks (paragraphs, headings,
list items, captions, code, table rows) and images (``<img>``, ``<picture>``, ``<figure>`` with
its ``<figcaption>``; ``src``, lazy ``data-src``, the largest local ``srcset`` candidate,
``data:`` URIs). Images keep their original bytes, resolved relative to the page inside the
folder (or the book); an image that cannot be had is counted by reason (``missing_image``,
``remote_image``, ``outside_root``, ``undecodable_image``, ``inline_svg``...) and the document
keeps its text.

**Order verified.** :func:`check_order` walks the *unsimplified* DOM with a different, plain
walker (every text and tail, every image reference, in document order) and checks that the
document's parts form a subsequence of it: every text block found after the one before, every
image between the texts it sat between. A document that fails is a reject
(``order_mismatch``), never written.
"""

from __future__ import annotations

import base64
import hashlib
import io
import posixpath
import re
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = ["HtmlError", "Extracted", "extract_html", "check_order", "document_sample", "epub_chapters",
           "warc_pages", "WarcImages", "IMAGE_DROP_REASONS"]

#: why an image of a page is not in its document
IMAGE_DROP_REASONS = ("missing_image", "remote_image", "outside_root", "undecodable_image", "inline_svg",
                      "no_source", "too_many_pixels")

_SKIP = {"script", "style", "noscript", "template", "nav", "header", "footer", "aside", "form", "button",
         "select", "input", "textarea", "iframe", "object", "embed", "canvas", "head", "title", "meta", "link",
         "map", "audio", "video", "dialog"}
_BLOCK = {"p", "div", "section", "article", "main", "h1", "h2", "h3", "h4", "h5", "h6", "li", "ul", "ol", "dl",
          "dt", "dd", "pre", "blockquote", "figure", "figcaption", "table", "tr", "caption", "thead", "tbody",
          "tfoot", "br", "hr", "body", "center", "address", "details", "summary", "picture", "html"}
_CELL = {"td", "th"}
#: class / id words of boilerplate containers (matched as whole words)
_BOILER = re.compile(r"(?:^|[\s_-])(cookie|cookies|consent|breadcrumbs?|sidebar|navbar|nav|menu|footer|header|"
                     r"share|social|comments?|advert|ads|banner-ad|skip-link|toc-sidebar)(?:$|[\s_-])", re.I)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.I)
_WS = re.compile(r"\s+")
_NOWS = re.compile(r"\s+|\u00ad")


class HtmlError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class Extracted:
    """A page as ordered nodes: ``("text", str, tag)`` and ``("image", ref, alt)`` (``ref`` as
    written in the page, resolved later)."""

    title: str
    nodes: list[tuple[str, str, str]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)


def _parse(html: bytes) -> Any:
    import lxml.html

    try:
        return lxml.html.document_fromstring(html)
    except Exception as exc:  # noqa: BLE001 - lxml's errors for empty / binary input
        raise HtmlError("unparsable_html", str(exc)) from None


def _hidden(el: Any) -> bool:
    a = el.attrib
    if "hidden" in a or a.get("aria-hidden") == "true" or _HIDDEN_STYLE.search(a.get("style", "")):
        return True
    words = f"{a.get('class', '')} {a.get('id', '')} {a.get('role', '')}"
    return a.get("role") in ("navigation", "banner", "contentinfo", "complementary") or bool(_BOILER.search(words))


def _srcset_best(srcset: str) -> list[str]:
    """``srcset`` candidates, the largest first (``640w`` / ``2x`` descriptors)."""
    out = []
    for cand in srcset.split(","):
        bits = cand.strip().split()
        if not bits:
            continue
        size = 1.0
        if len(bits) > 1:
            d = bits[1]
            try:
                size = float(d[:-1]) * (1 if d.endswith("w") else 1000) if d[-1] in "wx" else 1.0
            except ValueError:
                size = 1.0
        out.append((size, bits[0]))
    return [u for _, u in sorted(out, key=lambda t: -t[0])]


def image_refs(el: Any) -> list[str]:
    """The sources an ``<img>`` names, best first: the largest ``srcset`` candidate, lazy-load
    attributes, then ``src`` (a placeholder ``src`` of a lazy image comes last)."""
    refs: list[str] = []
    up = el.getparent()
    for _ in range(3):  # libxml2's HTML parser may nest the <img> inside an unclosed <source>
        if up is None or up.tag == "picture":
            break
        up = up.getparent()
    if up is not None and up.tag == "picture":
        for s in up.iter("source"):
            refs += _srcset_best(s.get("srcset", "") or s.get("data-srcset", ""))
    refs += _srcset_best(el.get("srcset", "") or el.get("data-srcset", ""))
    for attr in ("data-src", "data-original", "data-lazy-src", "src"):
        v = (el.get(attr) or "").strip()
        if v:
            refs.append(v)
    return list(dict.fromkeys(refs))


def extract_html(html: bytes) -> Extracted:
    """The page's ordered nodes (see the module docstring)."""
    root = _parse(html)
    title = _WS.sub(" ", root.findtext(".//title") or "").strip()
    out = Extracted(title=title)
    buf: list[str] = []
    tags: list[str] = []  # the innermost block tag of the text in ``buf``
    pre = 0

    def flush() -> None:
        text = "".join(buf)
        buf.clear()
        text = ("\n".join(line.rstrip() for line in text.strip("\n").splitlines()) if pre
                else _WS.sub(" ", text).strip())
        if text.strip():
            out.nodes.append(("text", text, tags[-1] if tags else "p"))

    def walk(el: Any) -> None:
        nonlocal pre
        tag = el.tag if isinstance(el.tag, str) else None
        if tag is None:  # a comment or processing instruction: its text is not content
            return
        tag = tag.lower().rsplit("}", 1)[-1]
        if tag == "svg":
            out.dropped["inline_svg"] += 1
            return
        if tag in _SKIP or _hidden(el):
            return
        if tag == "img":
            refs = image_refs(el)
            if buf:
                flush()
            if refs:
                out.nodes.append(("image", "\n".join(refs), _WS.sub(" ", el.get("alt") or el.get("title") or "").strip()))
            else:
                out.dropped["no_source"] += 1
            return
        block = tag in _BLOCK
        if block or tag in _CELL:
            if block and buf:
                flush()
            if tag in _CELL and buf and not buf[-1].endswith("\t"):
                buf.append("\t")
        if block:
            tags.append(tag)
        if tag == "pre":
            pre += 1
        if el.text:
            buf.append(el.text)
        for child in el:
            walk(child)
            if child.tail:
                buf.append(child.tail)
        if block:
            flush()
            tags.pop()
        if tag == "pre":
            pre -= 1
        elif tag in _CELL:
            buf.append("\t")

    body = root.find("body")
    try:
        walk(body if body is not None else root)
    except RecursionError:
        raise HtmlError("too_deep", "the DOM nests deeper than Python's recursion limit") from None
    if buf:
        flush()
    return out


def check_order(html: bytes, parts: list[tuple[str, str]]) -> str | None:
    """None when ``parts`` (``("text", s)`` / ``("image", ref)``) is a subsequence of the page's
    plain DOM walk; else where it breaks."""
    root = _parse(html)
    stream: list[str] = []
    todo: list[Any] = [root]  # elements to open, and the tails (str) to emit after them
    while todo:
        el = todo.pop()
        if isinstance(el, str):
            stream.append(el)
            continue
        if isinstance(el.tag, str):  # comments and processing instructions carry no content ...
            if el.text:
                stream.append(el.text)
            if el.tag.lower() == "img":
                stream += [f"\x00{ref}\x00" for ref in image_refs(el)]
            for child in reversed(el):  # ... but their tails do
                if child.tail:
                    todo.append(child.tail)
                todo.append(child)
    flat = _NOWS.sub("", "".join(stream))
    pos = 0
    for i, (kind, value) in enumerate(parts):
        needles = [_NOWS.sub("", f"\x00{value}\x00")] if kind == "image" else [_NOWS.sub("", b) for b in value.split("\n")]
        for n in needles:
            if not n:
                continue
            j = flat.find(n, pos)
            if j < 0:
                what = "image " + value if kind == "image" else f"text {n[:40]!r}"
                return f"part {i} ({what}) is not found after part {i - 1} in the source DOM order"
            pos = j + len(n)
    return None


# -- resolving images and building the sample --------------------------------------------------------

def _resolve(ref: str, page: str) -> tuple[str | None, bytes | None, str | None]:
    """(path inside the root, inline bytes, drop reason) for one image reference of ``page``."""
    if ref.startswith("data:"):
        head, _, data = ref.partition(",")
        if not head.endswith(";base64"):
            return None, None, "no_source"
        try:
            return None, base64.b64decode(data, validate=False), None
        except ValueError:
            return None, None, "undecodable_image"
    u = urlsplit(ref)
    if u.scheme in ("http", "https") or ref.startswith("//"):
        return None, None, "remote_image"
    if u.scheme and u.scheme != "file":
        return None, None, "no_source"
    path = unquote(u.path)
    if not path:
        return None, None, "no_source"
    joined = posixpath.normpath(path.lstrip("/") if path.startswith("/") else posixpath.join(posixpath.dirname(page), path))
    if joined.startswith("../") or joined == "..":
        return None, None, "outside_root"
    return joined, None, None


_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


def document_sample(key: str, html_by_part: list[tuple[str, bytes]], read: Callable[[str], bytes | None], *,
                    source: str, license: str | None = None, max_pixels: int = 100_000_000,
                    fmt: str = "html", resolve: Callable[[str, str], tuple[str | None, bytes | None, str | None]]
                    | None = None, extra_meta: dict[str, Any] | None = None, split_words: int | None = None) -> Any:
    """One interleaved Sample from the pages ``[(path, html)]`` (one page, or an EPUB's
    chapters in spine order); ``read(path)`` gives an image's bytes (None when missing);
    ``resolve(ref, page)`` maps an image reference to what ``read`` takes (default: a path in
    the folder; a WARC resolves URLs against the page's URL). With ``split_words``, a document
    longer than that is a *list* of samples cut at headings (:func:`split_at_headings`). Raises
    :class:`HtmlError` for a document that cannot be one (no text, order mismatch)."""
    from datalake.media import MediaError, probe_image
    from datalake.sample import Media

    media: list[Any] = []
    blobs: dict[str, bytes] = {}
    nodes: list[tuple[str, Any, bool]] = []  # ("text", line, is_heading) | ("image", media index, False)
    images: list[dict[str, Any]] = []
    by_digest: dict[str, int] = {}
    dropped: Counter[str] = Counter()
    titles, chapters = [], []
    for path, html in html_by_part:
        ex = extract_html(html)
        dropped.update(ex.dropped)
        titles.append(ex.title)
        first = len(nodes)
        kept: list[tuple[str, str]] = []  # what this page contributes, for the order check
        for kind, value, extra in ex.nodes:
            if kind == "text":
                nodes.append(("text", value, extra in _HEADINGS))
                kept.append(("text", value))
                continue
            got = reason = None
            for ref in value.split("\n"):
                rel, inline, reason = (resolve or _resolve)(ref, path)
                data = inline if inline is not None else (read(rel) if rel is not None else None)
                if data is None and reason is None:
                    reason = "missing_image"
                if data is not None:
                    got = (ref, rel, data)
                    break
            if got is None:
                dropped[reason or "missing_image"] += 1
                continue
            ref, rel, data = got
            try:
                info = probe_image(data, max_pixels=max_pixels)
            except MediaError as exc:
                dropped["too_many_pixels" if exc.reason == "too_many_pixels" else "undecodable_image"] += 1
                continue
            digest = hashlib.sha256(data).hexdigest()
            if digest not in by_digest:  # the same image twice in a document: one media, two parts
                by_digest[digest] = len(media)
                name = f"{len(media)}.{info.ext}"
                media.append(Media(name, info.mime, info.width, info.height))
                blobs[name] = data
                images.append({"src": rel or ref[:80], "alt": extra, "sha256": digest})
            nodes.append(("image", by_digest[digest], False))
            kept.append(("image", ref))
        if fmt == "epub":
            chapters.append({"path": path, "title": ex.title, "nodes": [first, len(nodes)]})
        why = check_order(html, kept)
        if why:
            raise HtmlError("order_mismatch", f"{path}: {why}")
    if not any(k == "text" for k, _, _ in nodes):
        raise HtmlError("no_text", "no text left after removing scripts, navigation and boilerplate")
    doc: dict[str, Any] = {"format": fmt, "title": next((t for t in titles if t), ""), "order_check": "ok",
                           "dropped_images": dict(sorted(dropped.items())), **(extra_meta or {})}
    if chapters:
        doc["chapters"] = chapters
    whole = _build(key, nodes, media, blobs, images, doc, source, license)
    if split_words is None or whole.meta["document"]["words"] <= split_words:
        return whole
    pieces = split_at_headings(nodes, split_words)
    out = []
    for j, (a, b) in enumerate(pieces):
        part_doc = {**doc, "part": {"index": j, "of": len(pieces), "nodes": [a, b], "split_at": "headings"}}
        part_doc.pop("chapters", None)
        if chapters:
            part_doc["chapters"] = [c["title"] for c in chapters if c["nodes"][0] < b and c["nodes"][1] > a]
        out.append(_build(f"{key}-p{j:02d}", nodes[a:b], media, blobs, images, part_doc, source, license))
    return out


def split_at_headings(nodes: list[tuple[str, Any, bool]], max_words: int) -> list[tuple[int, int]]:
    """``[start, stop)`` node ranges of at most ``max_words`` words where the text allows: cut
    before a heading, whole sections packed greedily; a section longer than the limit is cut
    between its paragraphs (a paragraph longer than the limit stays whole)."""
    def words_of(n: tuple[str, Any, bool]) -> int:
        return len(n[1].split()) if n[0] == "text" else 0

    sections: list[tuple[int, int]] = []
    start = 0
    for i, n in enumerate(nodes):
        if n[2] and i > start:
            sections.append((start, i))
            start = i
    sections.append((start, len(nodes)))
    ranges: list[tuple[int, int]] = []
    for a, b in sections:  # sections over the limit: cut between paragraphs
        w, s0 = 0, a
        for i in range(a, b):
            if w and w + words_of(nodes[i]) > max_words:
                ranges.append((s0, i))
                s0, w = i, 0
            w += words_of(nodes[i])
        ranges.append((s0, b))
    out: list[tuple[int, int]] = []  # then pack neighbours while they fit
    cur, cw = ranges[0], sum(words_of(n) for n in nodes[ranges[0][0]:ranges[0][1]])
    for a, b in ranges[1:]:
        w = sum(words_of(n) for n in nodes[a:b])
        if cw + w <= max_words:
            cur, cw = (cur[0], b), cw + w
        else:
            out.append(cur)
            cur, cw = (a, b), w
    out.append(cur)
    return out


def _build(key: str, nodes: list[tuple[str, Any, bool]], media: list[Any], blobs: dict[str, bytes],
           images: list[dict[str, Any]], doc: dict[str, Any], source: str, license: str | None) -> Any:
    """A Sample of ``nodes``: consecutive text nodes one text part, only the media it shows."""
    from datalake.pdf import estimate_tokens
    from datalake.sample import Media, MediaPart, Sample, Source, TextPart

    used = sorted({v for k, v, _ in nodes if k == "image"})
    new = {old: i for i, old in enumerate(used)}
    content: list[Any] = []
    lines: list[str] = []
    for kind, value, _h in nodes:
        if kind == "text":
            lines.append(value)
            continue
        if lines:
            content.append(TextPart("\n".join(lines)))
            lines.clear()
        content.append(MediaPart(new[value]))
    if lines:
        content.append(TextPart("\n".join(lines)))
    ms = []
    bl = {}
    for old in used:
        m = media[old]
        ext = m.name.rsplit(".", 1)[1]
        name = f"{new[old]}.{ext}"
        ms.append(Media(name, m.mime, m.width, m.height))
        bl[name] = blobs[m.name]
    text_chars = sum(len(p.text) for p in content if isinstance(p, TextPart))
    sizes = [(ms[p.media].width, ms[p.media].height) for p in content if isinstance(p, MediaPart)]
    d = {**doc, "words": sum(len(v.split()) for k, v, _ in nodes if k == "text"), "images": [images[i] for i in used],
         "token_estimate": estimate_tokens(text_chars, sizes)}
    if "chapters" in d and d["chapters"] and isinstance(d["chapters"][0], dict):
        d["chapters"] = [{"path": c["path"], "title": c["title"]} for c in d["chapters"]]
    return Sample(key=key, kind="interleaved", source=Source(source, license), media=tuple(ms),
                  content=tuple(content), meta={"document": d}, blobs=bl)


# -- EPUB ---------------------------------------------------------------------------------------------

def epub_chapters(data: bytes) -> tuple[list[tuple[str, bytes]], Callable[[str], bytes | None]]:
    """An EPUB's chapters in spine order ``[(path in the zip, xhtml)]`` and a reader of its files."""
    import lxml.etree

    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        container = lxml.etree.fromstring(z.read("META-INF/container.xml"))
        opf_path = container.find(".//{*}rootfile").get("full-path")
        opf = lxml.etree.fromstring(z.read(opf_path))
    except (zipfile.BadZipFile, KeyError, AttributeError, lxml.etree.XMLSyntaxError) as exc:
        raise HtmlError("unreadable_epub", f"not an EPUB (container.xml / OPF): {exc}") from None
    base = posixpath.dirname(opf_path)
    items = {i.get("id"): i for i in opf.iterfind(".//{*}manifest/{*}item")}
    names = set(z.namelist())
    chapters = []
    for ref in opf.iterfind(".//{*}spine/{*}itemref"):
        item = items.get(ref.get("idref"))
        if item is None or "html" not in (item.get("media-type") or ""):
            continue
        path = posixpath.normpath(posixpath.join(base, unquote(item.get("href", ""))))
        if path in names:
            chapters.append((path, z.read(path)))
    if not chapters:
        raise HtmlError("unreadable_epub", "the spine names no XHTML chapter")

    def read(path: str) -> bytes | None:
        return z.read(path) if path in names else None

    return chapters, read


# -- WARC ---------------------------------------------------------------------------------------------

def _warc_records(fh: Any) -> Iterator[tuple[str, str, Any, Any]]:
    """(target URI, content type, record, iterator) of each 200 response / resource record; the
    record's payload is read only by a caller that wants it (the iterator skips it otherwise)."""
    from warcio.archiveiterator import ArchiveIterator

    it = ArchiveIterator(fh)
    for rec in it:
        url = rec.rec_headers.get_header("WARC-Target-URI")
        if rec.rec_type not in ("response", "resource") or not url:
            continue
        h = rec.http_headers
        if h is not None and h.get_statuscode() != "200":
            continue
        ctype = ((h.get_header("Content-Type") if h is not None else rec.rec_headers.get_header("Content-Type")) or "")
        yield url, ctype.split(";")[0].strip().lower(), rec, it


def warc_pages(fh: Any) -> Iterator[tuple[str, bytes, int, int]]:
    """The HTML pages of a WARC stream: ``(url, html, record offset, record length)``."""
    for url, ctype, rec, it in _warc_records(fh):
        if ctype in ("text/html", "application/xhtml+xml"):
            payload = rec.content_stream().read()
            yield url, payload, it.get_record_offset(), it.get_record_length()


def warc_record_payload(raw: bytes) -> bytes:
    """The payload of the one record in ``raw`` (a record's bytes, read by offset and length)."""
    import io as _io

    for _url, _ctype, rec, _it in _warc_records(_io.BytesIO(raw)):
        return bytes(rec.content_stream().read())
    raise HtmlError("unreadable_warc", "no response record at that offset")


class WarcImages:
    """Where the image records of one WARC are (by URL, without their bytes); ``read(url)``
    fetches one through ``fetch(offset, length)``; ``resolve`` takes a page's image references
    against its URL -- an image the crawl did not capture is missing, nothing is downloaded."""

    def __init__(self, fh: Any, fetch: Callable[[int, int], bytes]) -> None:
        self.where: dict[str, tuple[int, int]] = {}
        self.fetch = fetch
        for url, ctype, _rec, it in _warc_records(fh):
            if ctype.startswith("image/"):  # the offset call skips the payload unread
                self.where.setdefault(_nofrag(url), (it.get_record_offset(), it.get_record_length()))

    def read(self, url: str) -> bytes | None:
        at = self.where.get(url)
        return warc_record_payload(self.fetch(*at)) if at else None

    @staticmethod
    def resolve(ref: str, page_url: str) -> tuple[str | None, bytes | None, str | None]:
        from urllib.parse import urljoin

        if ref.startswith("data:"):
            return _resolve(ref, "")
        url = urljoin(page_url, ref)
        if urlsplit(url).scheme not in ("http", "https"):
            return None, None, "no_source"
        return _nofrag(url), None, None


def _nofrag(url: str) -> str:
    from urllib.parse import urldefrag

    return urldefrag(url)[0]
