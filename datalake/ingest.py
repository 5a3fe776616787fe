"""Ingest raw image-text data into a new dataset version -- and account for every input.

Three source layouts are read (on local disk or S3, through the same store protocol):

* **folder** in the img2dataset layout: ``000123.jpg`` + ``000123.txt`` and/or
  ``000123.json`` (possibly in sub-folders); one input per stem;
* **table**: a JSONL or Parquet file with an image column (a path relative to the table, a
  ``file://`` or ``s3://`` URI, raw bytes, or a ``{"bytes": ...}`` struct) and a caption
  column; one input per row;
* **WebDataset tars** (a ``.tar`` file or a folder of them): members grouped by key; a
  ``<key>.json`` that is already an mmlake record is validated as such; one input per key.

Each input ends as exactly one of: a sample in the new version, or a row in the rejects table
(``rejects.parquet`` beside the shards) with its source, key, reason and detail. So
``ingested + rejected == inputs`` always holds, and the summary says so. Image checks (format
from the bytes, pixel limit from the header, a decode to catch truncation) run in a process
pool when ``workers > 1``; results are consumed in input order, so the version is the same
whatever the number of workers.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from datalake.media import IMAGE_EXTS, MediaError, probe_image
from datalake.sample import KINDS, Media, MediaPart, Sample, SampleError, Source, TextPart
from datalake.store import ObjectNotFound, Store, StoreError, open_store
from datalake.version import Lake, validate_name
from datalake.video import VIDEO_EXTS, VIDEO_MIME, VIDEO_REJECT_REASONS

__all__ = ["IngestConfig", "IngestResult", "Candidate", "ingest", "REJECT_REASONS", "INGEST_KINDS", "EmptyIngest"]

#: every reason an input can be rejected for
REJECT_REASONS = (
    "empty_file", "not_an_image", "unsupported_format", "too_many_pixels", "truncated_image",
    "undecodable_image", "missing_image", "missing_caption", "invalid_json", "non_utf8_text",
    "invalid_record", "duplicate_key", "unsupported_uri", "unreadable_source", "ambiguous_media",
    "unreadable_tar", "unparsable_html", "too_deep", "order_mismatch", "no_text", "unreadable_epub", "unreadable_warc",
    *(r for r in VIDEO_REJECT_REASONS if r != "empty_file"), "outside_roots",
)
_TEXT_EXTS = ("txt", "caption")
#: inputs that other pipelines will take, rejected with a pointer instead of "missing_image"
NO_INGEST_PATH = {
    **{e: "videos: ingest the folder with --kind video (probed, then shots, keyframes and captions in a pipeline)"
       for e in VIDEO_EXTS},
    **{e: "HTML pages are documents: ingest the folder with --kind interleaved (text and images in page order)"
       for e in ("html", "htm", "xhtml")},
    "epub": "EPUB books are documents: ingest the folder with --kind interleaved (chapters in spine order)",
    "warc": "WARC crawls are documents: ingest the folder with --kind interleaved (HTML records with their images)",
    "svg": "SVG is a vector format: rasterise it first (e.g. rsvg-convert -w 1024 in.svg > out.png)",
}
_IGNORED = re.compile(r"(_stats\.json|\.parquet|\.DS_Store)$")
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-]")


#: what ingest builds: image+text pairs (caption, ocr, knowledge), documents (interleaved: PDFs, HTML pages, EPUB books),
#: images alone (``image``: caption samples without text yet, for OCR, captioning or dedupe) and
#: text alone (``text``: .txt/.md files, or a table's text column)
INGEST_KINDS = ("caption", "ocr", "knowledge", "interleaved", "image", "text", "agent", "video")
#: what ``--kind agent`` does with an element box that leaves the screenshot
OUT_OF_VIEW = ("clip", "drop", "reject")


@dataclass(frozen=True)
class IngestConfig:
    dataset: str
    kind: str = "caption"
    max_pixels: int = 100_000_000
    shard_samples: int = 1000
    workers: int = 1
    image_column: str | None = None
    caption_column: str | None = None
    key_column: str | None = None
    license: str | None = None
    pdf_dpi: int = 110
    #: register a version even when no input was kept (otherwise that is an error)
    allow_empty: bool = False
    #: agent screenshots: an element box outside the image is clipped to it, dropped, or rejects the sample
    out_of_view: str = "clip"
    #: interleaved documents (HTML, EPUB, WARC) longer than this many words become several samples,
    #: cut at headings (``key-p00``, ``key-p01`` ...); None keeps every document whole
    split_words: int | None = None
    #: videos (``--kind video``): probing one file may take at most this long (a pathological
    #: file is rejected as ``video_timeout``, never a stalled worker)
    video_time_limit_s: float = 60.0
    #: where inputs may be read from (``datalake.roots``): a table row naming a file outside
    #: them is rejected as ``outside_roots``; None: anywhere (the CLI on one's own machine)
    roots: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        validate_name(self.dataset)
        if self.kind not in INGEST_KINDS:
            why = "comes from its own pipeline" if self.kind in KINDS else "is not a sample kind"
            raise ValueError(f"ingest builds {list(INGEST_KINDS)}; kind {self.kind!r} {why}")
        if self.out_of_view not in OUT_OF_VIEW:
            raise ValueError(f"out_of_view must be one of {list(OUT_OF_VIEW)}, got {self.out_of_view!r}")
        if self.split_words is not None and self.split_words < 10:
            raise ValueError("split_words must be at least 10 (or None: documents stay whole)")
        if self.max_pixels < 1 or self.shard_samples < 1 or self.workers < 1:
            raise ValueError("max_pixels, shard_samples and workers must be >= 1")


@dataclass
class Candidate:
    """One input, as read from the source, before any check."""

    source: str
    key: str | None
    image: bytes | None = None
    image_name: str | None = None
    caption: str | bytes | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    license: str | None = None
    uri: str | None = None
    record: dict[str, Any] | None = None  # an mmlake record found in a WebDataset tar
    blobs: dict[str, bytes] | None = None
    error: tuple[str, str] | None = None  # (reason, detail) found while reading


@dataclass
class IngestResult:
    output: str
    manifest: str
    inputs: int
    ingested: int
    rejected: dict[str, int]
    sources: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"output": self.output, "manifest": self.manifest, "inputs": self.inputs,
                "ingested": self.ingested, "rejected": dict(sorted(self.rejected.items())),
                "sources": self.sources}

    def summary(self) -> str:
        reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.rejected.items()))
        m = sum(self.rejected.values())
        return (f"ingested {self.ingested}, rejected {m}" + (f" ({reasons})" if reasons else "")
                + f" of {self.inputs} inputs -> {self.output}")


# ---------------------------------------------------------------------------------------------
# reading sources


def _safe_key(raw: str) -> str:
    """A sample key for the name ``raw``: the name itself where it is one already (sub-folders
    joined by ``-``); otherwise its characters made safe plus 8 hex of the name's SHA-1, so
    ``a b``, ``a_b`` and ``a+b`` stay three keys (the original name is the sample's source)."""
    canon = raw.replace("/", "-")
    key = _BAD_KEY_CHARS.sub("_", canon).lstrip("_-") or "k"
    if key != canon or len(key) > 200:
        key = f"{key[:190]}-{hashlib.sha1(raw.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
    return key


def _split_source(src: str) -> tuple[Store, str | None]:
    """A folder -> (store at it, None); a file -> (store at its folder, file name)."""
    if src.startswith("s3://"):
        store = open_store(src)
        if any(src.endswith(ext) for ext in (".jsonl", ".json", ".parquet", ".tar")):
            head, _, name = src.rstrip("/").rpartition("/")
            return open_store(head), name
        return store, None
    path = src[len("file://"):] if src.startswith("file://") else src
    if os.path.isfile(path):
        return open_store(os.path.dirname(os.path.abspath(path))), os.path.basename(path)
    if os.path.isdir(path):
        return open_store(path), None
    raise ValueError(f"ingest source {src!r} does not exist: give a folder, a .jsonl/.parquet table, or .tar files")


def _read_folder(store: Store, files: list[str], kind: str = "caption") -> Iterator[Candidate]:
    groups: dict[str, dict[str, str]] = {}
    for f in files:
        if _IGNORED.search(f):
            continue
        stem, dot, ext = f.rpartition(".")
        if not dot or "/" in ext:
            stem, ext = f, ""
        groups.setdefault(stem, {})[ext.lower()] = f
    basenames = [s.rsplit("/", 1)[-1] for s in groups]
    use_base = len(set(basenames)) == len(basenames)
    for stem in sorted(groups):
        members = groups[stem]
        key = _safe_key(stem.rsplit("/", 1)[-1] if use_base else stem)
        c = Candidate(source=store.url(stem), key=key)
        media_exts = VIDEO_MIME if kind == "video" else IMAGE_EXTS
        images = [members[e] for e in members if e in media_exts]
        try:
            if len(images) > 1:
                what = "videos" if kind == "video" else "images"
                c.error = ("ambiguous_media", f"several {what} share the stem: {sorted(images)}")
            elif images:
                c.image_name, c.image = images[0], store.read(images[0])
                c.uri = store.url(images[0])
            for ext in _TEXT_EXTS:
                if ext in members:
                    c.caption = store.read(members[ext])
                    break
            if "json" in members:
                raw = store.read(members["json"])
                try:
                    doc = json.loads(raw)
                    if not isinstance(doc, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    c.error = c.error or ("invalid_json", f"{members['json']}: {exc}")
                else:
                    _apply_sidecar(c, doc)
            unknown = [m for e, m in members.items() if e not in media_exts and e not in _TEXT_EXTS and e != "json"]
            if kind == "text":
                if "md" in members and c.caption is None:
                    c.caption = store.read(members["md"])
                if c.caption is None and not c.error:
                    c.error = ("missing_caption", f"no text file (.txt, .md) for stem {stem!r}")
                yield c
                continue
            blocked = [e for e in members if e in NO_INGEST_PATH and e not in media_exts]
            if kind == "video" and not images and not c.error:
                c.error = ("missing_image", f"no video file ({', '.join('.' + e for e in VIDEO_EXTS)}) for stem "
                                            f"{stem!r} (found {sorted(members.values())})")
            if not images and blocked and not c.error:
                c.error = ("unsupported_format", f"{members[blocked[0]]}: {NO_INGEST_PATH[blocked[0]]}")
            if not images and not c.error:
                c.error = ("missing_image", f"no image file for stem {stem!r} (found {sorted(members.values())})"
                           + (f"; unrecognised: {unknown}" if unknown else ""))
        except (ObjectNotFound, StoreError, OSError) as exc:
            c.error = ("unreadable_source", str(exc))
        yield c


def _apply_sidecar(c: Candidate, doc: dict[str, Any]) -> None:
    if c.caption is None and isinstance(doc.get("caption"), str):
        c.caption = doc["caption"]
    if isinstance(doc.get("url"), str):
        c.uri = doc["url"]
    if isinstance(doc.get("license"), str):
        c.license = doc["license"]
    extra = {k: v for k, v in doc.items() if k not in ("caption",)}
    if extra:
        c.meta["source_meta"] = extra


def _cell_image(store: Store, value: Any, where: str, roots: tuple[str, ...] | None = None
                ) -> tuple[bytes | None, str | None, tuple[str, str] | None]:
    """Resolve a table's image cell -> (bytes, uri, error); with ``roots``, a path or URI that
    resolves outside them (absolute, ``..``, a symlink) is the error ``outside_roots``."""
    if isinstance(value, dict):
        if isinstance(value.get("bytes"), (bytes, bytearray)):
            return bytes(value["bytes"]), value.get("path") or where, None
        value = value.get("path")
    if isinstance(value, (bytes, bytearray)):
        return bytes(value), where, None
    if not isinstance(value, str) or not value:
        return None, None, ("missing_image", f"{where}: image cell is {value!r}")
    if value.startswith(("http://", "https://")):
        return None, value, ("unsupported_uri", f"{value}: ingest does not download; fetch with img2dataset first")
    if roots is not None:
        from datalake.roots import OutsideRoots, Roots

        target = value if value.startswith(("s3://", "file://")) or os.path.isabs(value) else \
            store.url("").rstrip("/") + "/" + value  # not store.url(value): it refuses '..' before we can say why
        try:
            Roots.of(roots).check(target, "image")
        except OutsideRoots as exc:
            return None, value, ("outside_roots", f"{where}: {exc}")
    try:
        if value.startswith(("s3://", "file://")):
            head, _, name = value.rpartition("/")
            st = open_store(head)
            return st.read(name), value, None
        if os.path.isabs(value):
            return open_store(os.path.dirname(value)).read(os.path.basename(value)), "file://" + value, None
        return store.read(value), store.url(value), None
    except (ObjectNotFound, StoreError, OSError, ValueError) as exc:
        return None, value, ("unreadable_source", str(exc))


def _table_rows(store: Store, name: str) -> Iterator[tuple[str, dict[str, Any] | None, str | None]]:
    """Yield (where, row, json error) for each row of a JSONL or Parquet table."""
    if name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.ParquetFile(pa.BufferReader(store.read(name)))
        n = 0
        for batch in table.iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                yield f"{store.url(name)}#row={n}", row, None
                n += 1
        return
    with store.open(name) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{store.url(name)}:{lineno}"
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError(f"a row is a JSON object, got {type(row).__name__}")
            except (UnicodeDecodeError, ValueError) as exc:
                yield where, None, str(exc)
                continue
            yield where, row, None


def _pick(row: dict[str, Any], wanted: str | None, defaults: tuple[str, ...]) -> str | None:
    if wanted:
        return wanted
    for d in defaults:
        if d in row:
            return d
    return None


def _read_table(store: Store, name: str, cfg: IngestConfig) -> Iterator[Candidate]:
    for n, (where, row, err) in enumerate(_table_rows(store, name)):
        if row is None:
            yield Candidate(source=where, key=None, error=("invalid_json", err or "unparseable row"))
            continue
        img_col = _pick(row, cfg.image_column, ("image", "image_path", "path", "file", "url", "image_url"))
        cap_col = _pick(row, cfg.caption_column, ("caption", "text", "alt", "txt"))
        key_col = _pick(row, cfg.key_column, ("key", "id"))
        raw_key = row.get(key_col) if key_col else None
        key = _safe_key(str(raw_key)) if raw_key not in (None, "") else f"{n:09d}"
        c = Candidate(source=where, key=key)
        if cfg.kind == "text":
            img_col = None
            cap_col = _pick(row, cfg.caption_column, ("text", "content", "body", "caption"))
        elif img_col is None or row.get(img_col) is None:
            c.error = ("missing_image", f"{where}: no image column (tried {cfg.image_column or 'image, image_path, path, file, url'}); "
                                        "name it with --image-column")
        else:
            c.image, c.uri, c.error = _cell_image(store, row[img_col], where, cfg.roots)
            c.image_name = c.uri if isinstance(c.uri, str) else None
        c.caption = row.get(cap_col) if cap_col else None
        if c.caption is not None and not isinstance(c.caption, (str, bytes)):
            c.caption = str(c.caption)
        if isinstance(row.get("license"), str):
            c.license = row["license"]
        extra = {k: v for k, v in row.items() if k not in {img_col, cap_col} and _jsonable(v)}
        if extra:
            c.meta["source_meta"] = extra
        yield c


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _read_tar(store: Store, name: str) -> Iterator[Candidate]:
    where = store.url(name)

    def candidate(key: str, members: dict[str, bytes]) -> Candidate:
        c = Candidate(source=f"{where}#{key}", key=_safe_key(key))
        doc = None
        if "json" in members:
            try:
                doc = json.loads(members["json"])
                if not isinstance(doc, dict):
                    raise ValueError("not an object")
            except ValueError as exc:
                c.error = ("invalid_json", f"{key}.json: {exc}")
                return c
        if doc is not None and "kind" in doc and isinstance(doc.get("media"), list):
            c.record, c.blobs = doc, {k: v for k, v in members.items() if k != "json"}
            return c
        images = [e for e in members if e.rsplit(".", 1)[-1] in IMAGE_EXTS]
        if len(images) > 1:
            c.error = ("ambiguous_media", f"several images for key {key!r}: {images}")
        elif images:
            c.image_name, c.image = f"{key}.{images[0]}", members[images[0]]
            c.uri = f"{where}#{key}.{images[0]}"
        else:
            c.error = ("missing_image", f"no image member for key {key!r} (members: {sorted(members)})")
        for ext in _TEXT_EXTS:
            if ext in members:
                c.caption = members[ext]
                break
        if doc is not None:
            _apply_sidecar(c, doc)
        return c

    key: str | None = None
    members: dict[str, bytes] = {}
    try:
        with store.open(name) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for ti in tar:
                if not ti.isfile():
                    continue
                base = ti.name.rsplit("/", 1)[-1]
                if base.startswith("."):
                    continue
                prefix = ti.name[: len(ti.name) - len(base)]
                stem, dot, suffix = base.partition(".")
                k = prefix + stem
                fobj = tar.extractfile(ti)
                data = fobj.read() if fobj else b""
                if k != key:
                    if key is not None:
                        yield candidate(key, members)
                    key, members = k, {}
                members[suffix.lower() if dot else ""] = data
    except (tarfile.TarError, EOFError, OSError, StoreError) as exc:
        if key is not None:
            # the group being read when the tar broke may be incomplete: reject it with the tail
            yield Candidate(source=f"{where}#{key}", key=_safe_key(key),
                            error=("unreadable_tar", f"tar broken while reading {key!r} and after: {exc}"))
        else:
            yield Candidate(source=where, key=None, error=("unreadable_tar", f"{exc}"))
        return
    if key is not None:
        yield candidate(key, members)


def read_candidates(src: str, cfg: IngestConfig) -> tuple[Iterator[Candidate], int | None]:
    """All inputs of ``src`` in a deterministic order, and their number when known upfront."""
    store, name = _split_source(src)
    if name is not None:
        if name.endswith((".jsonl", ".json", ".parquet")):
            return _read_table(store, name, cfg), None
        if name.endswith(".tar"):
            return _read_tar(store, name), None
        raise ValueError(f"{src!r}: a file source is a .jsonl, .parquet or .tar")
    files = list(store.list(""))
    tars = [f for f in files if f.endswith(".tar")]
    if tars and cfg.kind != "text" and not any(f.rpartition(".")[2].lower() in IMAGE_EXTS for f in files):
        def chain() -> Iterator[Candidate]:
            for t in tars:
                yield from _read_tar(store, t)
        return chain(), None
    docs = [f for f in files if f.lower().endswith(_DOC_EXTS)]
    if docs and cfg.kind == "interleaved":
        warcs = any(f.lower().endswith((".warc", ".warc.gz")) for f in docs)
        return _read_documents(store, sorted(docs)), None if warcs else len(docs)
    pdfs = [f for f in files if f.lower().endswith(".pdf")]
    if pdfs and cfg.kind != "text" and not any(f.rpartition(".")[2].lower() in IMAGE_EXTS for f in files):
        return _read_pdfs(store, sorted(pdfs)), len(pdfs)
    stems = {f.rpartition(".")[0] or f for f in files if not _IGNORED.search(f)}
    return _read_folder(store, files, cfg.kind), len(stems)


_DOC_EXTS = (".html", ".htm", ".xhtml", ".epub", ".warc", ".warc.gz")


def _read_documents(store: Store, docs: list[str]) -> Iterator[Candidate]:
    """A folder of HTML pages, EPUB books and WARC crawls (``--kind interleaved``): each page,
    book or crawled HTML record is one document; its images are read (from the folder, the
    book, or the same WARC's image records) by the worker that builds it."""
    from urllib.parse import urlsplit

    root = store.url("")
    for f in docs:
        if f.lower().endswith((".warc", ".warc.gz")):
            from datalake.html import HtmlError, warc_pages

            try:
                with store.open(f) as fh:
                    for url, html, off, length in warc_pages(fh):
                        u = urlsplit(url)
                        yield Candidate(source=url, key=_safe_key(u.netloc + (u.path.rstrip("/") or "/index")),
                                        uri=f"{store.url(f)}#offset={off}&length={length}", blobs={"html": html},
                                        meta={"root": root, "page": url, "warc": {"file": f, "offset": off,
                                                                                   "length": length}})
            except (ObjectNotFound, StoreError, OSError, HtmlError, ValueError) as exc:
                yield Candidate(source=store.url(f), key=_safe_key(f), error=("unreadable_source", f"{f}: {exc}"))
            continue
        c = Candidate(source=store.url(f), key=_safe_key(f.rpartition(".")[0]), uri=store.url(f),
                      meta={"root": root, "page": f})
        try:
            c.blobs = {"epub" if f.lower().endswith(".epub") else "html": store.read(f)}
        except (ObjectNotFound, StoreError, OSError) as exc:
            c.error = ("unreadable_source", str(exc))
        yield c


def _document_sample(c: Candidate, cfg: IngestConfig) -> Sample | list[Sample] | tuple[str, str]:
    from datalake.html import HtmlError, document_sample, epub_chapters

    assert c.blobs is not None
    try:
        if "epub" in c.blobs:
            parts, read = epub_chapters(c.blobs["epub"])
            fmt = "epub"
        else:
            store = open_store(c.meta["root"])

            def read(path: str) -> bytes | None:
                try:
                    return store.read(path)
                except (ObjectNotFound, StoreError, OSError, ValueError):
                    return None

            parts, fmt = [(c.meta["page"], c.blobs["html"])], "html"
        extra: dict[str, Any] = {"path": c.meta["page"]} if fmt == "html" else {}
        resolve = None
        if "warc" in c.meta:  # images from the same crawl, by URL
            images = _warc_images(c.meta["root"], c.meta["warc"]["file"])
            read, resolve, fmt = images.read, images.resolve, "warc"
            extra = {"url": c.meta["page"], "warc": c.meta["warc"]}
        return document_sample(c.key or "doc", parts, read, source=c.uri or c.source, license=cfg.license,
                               max_pixels=cfg.max_pixels, fmt=fmt, resolve=resolve, extra_meta=extra,
                               split_words=cfg.split_words)
    except HtmlError as exc:
        return (exc.reason, exc.detail)
    except SampleError as exc:
        return ("invalid_record", str(exc))


@functools.lru_cache(maxsize=2)
def _warc_images(root: str, name: str) -> Any:
    """Where one WARC's image records are, once per worker process (their bytes are read by
    offset when a page needs them)."""
    from datalake.html import WarcImages

    store = open_store(root)
    with store.open(name) as fh:
        return WarcImages(fh, lambda off, length: store.read_range(name, off, length))


def _read_pdfs(store: Store, pdfs: list[str]) -> Iterator[Candidate]:
    """A folder of PDFs: each document becomes one long-document sample (``datalake.pdf``)."""
    for f in pdfs:
        c = Candidate(source=store.url(f), key=_safe_key(f.rpartition(".")[0]), uri=store.url(f))
        try:
            c.blobs = {"pdf": store.read(f)}
        except (ObjectNotFound, StoreError, OSError) as exc:
            c.error = ("unreadable_source", str(exc))
        yield c


# ---------------------------------------------------------------------------------------------
# checking and building samples (runs in worker processes)


def build_sample(c: Candidate, cfg: IngestConfig) -> Sample | list[Sample] | tuple[str, str]:
    """A valid Sample (several for a document split at headings), or (reason, detail). Never
    raises for bad data."""
    if c.error:
        return c.error
    if c.record is not None:
        try:
            return Sample.from_json(c.record, blobs=c.blobs or {}, key_hint=c.key)
        except SampleError as exc:
            return ("invalid_record", str(exc))
    if c.blobs and ("html" in c.blobs or "epub" in c.blobs):
        return _document_sample(c, cfg)
    if c.blobs and "pdf" in c.blobs:
        from datalake.pdf import PdfError, pdf_sample

        try:
            return pdf_sample(c.key or "doc", c.blobs["pdf"], source=c.uri or c.source, license=cfg.license,
                              dpi=cfg.pdf_dpi)
        except PdfError as exc:
            return (exc.reason, exc.detail)
        except SampleError as exc:
            return ("invalid_record", str(exc))
    if cfg.kind == "text":
        return _text_sample(c, cfg)
    if cfg.kind == "video":
        return _video_sample(c, cfg)
    assert c.key is not None and c.image is not None
    try:
        info = probe_image(c.image, max_pixels=cfg.max_pixels)
    except MediaError as exc:
        return (exc.reason, exc.detail)
    if cfg.kind == "agent":
        return _agent_sample(c, cfg, info)
    caption = _caption(c)
    if isinstance(caption, tuple):
        return caption
    if not caption and cfg.kind != "image":
        return ("missing_caption", "no caption (.txt, or 'caption' in the .json / table)" if c.caption is None
                else "caption is empty")
    meta: dict[str, Any] = {"sha256": hashlib.sha256(c.image).hexdigest(), "bytes": len(c.image),
                            **c.meta}
    if c.image_name:
        given = c.image_name.rsplit(".", 1)[-1].lower()
        if given in IMAGE_EXTS and IMAGE_EXTS[given] != info.format:
            meta["ext_mismatch"] = f".{given} file holds {info.format}"
    name = f"0.{info.ext}"
    if cfg.kind == "image" and not caption:
        meta["captioned"] = False  # an image awaiting its text (an ocr or caption stage)
    try:
        return Sample(key=c.key, kind="caption" if cfg.kind == "image" else cfg.kind,  # type: ignore[arg-type]
                      source=Source(uri=c.uri or c.source, license=c.license or cfg.license),
                      media=(Media(name, info.mime, info.width, info.height),),
                      content=(MediaPart(0), TextPart(caption)) if caption else (MediaPart(0),), meta=meta,
                      blobs={name: c.image})
    except SampleError as exc:
        return ("invalid_record", str(exc))


def _caption(c: Candidate) -> str | tuple[str, str]:
    """The candidate's caption as stripped text ('' if none), or the reject for bytes that are not UTF-8."""
    caption = c.caption
    if isinstance(caption, bytes):
        try:
            caption = caption.decode("utf-8")
        except UnicodeDecodeError as exc:
            return ("non_utf8_text", f"caption is not UTF-8: {exc}")
    return (caption or "").strip()


def _video_sample(c: Candidate, cfg: IngestConfig) -> Sample | tuple[str, str]:
    """A ``video`` sample: the file in original bytes, probed (container, codec, duration, fps,
    frames counted and decoded, size, rotation, audio); a caption file, if any, is its text."""
    from datalake.video import VideoError, probe_video

    assert c.key is not None and c.image is not None and c.image_name is not None
    try:
        info = probe_video(c.image, time_limit_s=cfg.video_time_limit_s)
    except VideoError as exc:
        return (exc.reason, f"{c.image_name}: {exc.detail}")
    caption = _caption(c)
    if isinstance(caption, tuple):
        return caption
    ext = c.image_name.rsplit(".", 1)[-1].lower()
    name = f"0.{ext}"
    meta: dict[str, Any] = {"sha256": hashlib.sha256(c.image).hexdigest(), "bytes": len(c.image),
                            "video": {name: info.to_json()}, **c.meta}
    try:
        return Sample(key=c.key, kind="video", source=Source(uri=c.uri or c.source, license=c.license or cfg.license),
                      media=(Media(name, VIDEO_MIME[ext], info.width, info.height, duration_s=info.duration_s,
                                   fps=info.fps),),
                      content=(MediaPart(0), TextPart(caption)) if caption else (MediaPart(0),), meta=meta,
                      blobs={name: c.image})
    except SampleError as exc:
        return ("invalid_record", str(exc))


def _agent_sample(c: Candidate, cfg: IngestConfig, info: Any) -> Sample | tuple[str, str]:
    """A screenshot + its element side file (``{"elements": [{"bbox": [x0, y0, x1, y1], "text":
    ..., "type": ..., "role": ...}], "platform": ..., "instruction": ...}``) as an ``agent``
    sample: one ``ui_element`` box per element, a grounding text that names each with its box
    placeholder. Boxes leaving the screenshot are clipped, dropped or reject the sample
    (``out_of_view``), counted in ``meta.elements``."""
    from datalake.sample import Annotation

    doc = c.meta.get("source_meta") or {}
    elements = doc.get("elements")
    if not isinstance(elements, list) or not elements:
        return ("missing_caption", "an agent screenshot needs a .json side file with a non-empty 'elements' list")
    w, h = info.width, info.height
    anns, lines = [], []
    clipped = dropped = 0
    for j, el in enumerate(elements):
        box = el.get("bbox", el.get("xyxy")) if isinstance(el, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            return ("invalid_record", f"elements[{j}]: needs bbox [x0, y0, x1, y1] in pixels")
        x0, y0, x1, y1 = (float(v) for v in box)
        if x1 < x0 or y1 < y0:
            return ("invalid_record", f"elements[{j}]: bbox {box} has x1 < x0 or y1 < y0")
        inside = x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h
        if not inside:
            if cfg.out_of_view == "reject":
                return ("invalid_record", f"elements[{j}]: bbox {box} leaves the {w}x{h} screenshot "
                                          "(use --out-of-view clip or drop)")
            cx0, cy0, cx1, cy1 = max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)
            if cfg.out_of_view == "drop" or cx1 - cx0 < 1 or cy1 - cy0 < 1:  # nothing of it is on screen
                dropped += 1
                continue
            x0, y0, x1, y1 = cx0, cy0, cx1, cy1
            clipped += 1
        text = str(el.get("text") or "").strip() or None
        label = str(el.get("type") or el.get("label") or "element")
        anns.append(Annotation(0, "box", xyxy=(x0, y0, x1, y1), label=label, text=text, role="ui_element"))
        lines.append(f"{label}" + (f" \"{text}\"" if text else "") + f" {{box:{len(anns) - 1}}}")
    if not anns:
        return ("invalid_record", f"all {len(elements)} element boxes leave the {w}x{h} screenshot")
    instruction = str(doc.get("instruction") or "").strip()
    body = (instruction + "\n" if instruction else "") + "\n".join(lines)
    meta = {"sha256": hashlib.sha256(c.image or b"").hexdigest(), "platform": str(doc.get("platform") or "web"),
            "elements": {"given": len(elements), "kept": len(anns), "clipped": clipped, "dropped": dropped}}
    name = f"0.{info.ext}"
    try:
        return Sample(key=c.key or "screen", kind="agent", source=Source(uri=c.uri or c.source,
                                                                          license=c.license or cfg.license),
                      media=(Media(name, info.mime, w, h),), content=(MediaPart(0), TextPart(body)),
                      annotations=tuple(anns), meta=meta, blobs={name: c.image or b""})
    except SampleError as exc:
        return ("invalid_record", str(exc))


def _text_sample(c: Candidate, cfg: IngestConfig) -> Sample | tuple[str, str]:
    text = c.caption
    if text is None:
        return ("missing_caption", "no text (a .txt/.md file, or a table's text column)")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            return ("non_utf8_text", f"text is not UTF-8: {exc}")
    if not text.strip():
        return ("missing_caption", "text is empty")
    meta = {"sha256": hashlib.sha256(text.encode()).hexdigest(), "chars": len(text), **c.meta}
    try:
        return Sample(key=c.key or "doc", kind="text", source=Source(uri=c.uri or c.source, license=c.license or cfg.license),
                      content=(TextPart(text),), meta=meta)
    except SampleError as exc:
        return ("invalid_record", str(exc))


def _ordered_map(fn: Callable[[Candidate], Any], items: Iterable[Candidate], workers: int) -> Iterator[Any]:
    """``map(fn, items)`` in order, on a process pool with a bounded window of work in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    window = workers * 16
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending: list[Future[Any]] = []
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for f in pending:
            yield f.result()


class _Builder:
    def __init__(self, cfg: IngestConfig) -> None:
        self.cfg = cfg

    def __call__(self, c: Candidate) -> tuple[Candidate, Sample | list[Sample] | tuple[str, str]]:
        out = build_sample(c, self.cfg)
        # bytes travel back inside the Sample; don't ship the candidate's copy twice
        return Candidate(source=c.source, key=c.key), out


def ingest(src: str | list[str], lake: Lake, cfg: IngestConfig, *, progress: bool | None = None,
           created: dict[str, Any] | None = None) -> IngestResult:
    """Read every input of ``src``, write the good ones as a new version of ``cfg.dataset`` and
    the rest to its rejects table; return the accounting."""
    from tqdm import tqdm

    srcs = [src] if isinstance(src, str) else list(src)
    streams = [read_candidates(s, cfg) for s in srcs]
    spaces = _namespaces(srcs) if len(srcs) > 1 else [None]
    total = sum(n for _, n in streams) if all(n is not None for _, n in streams) else None

    def all_candidates() -> Iterator[Candidate]:
        for ns, (it, _) in zip(spaces, streams, strict=True):
            for c in it:
                if ns is not None and c.key is not None:  # several inputs: keys live in their input's namespace
                    c.key = _safe_key(f"{ns}-{c.key}")
                yield c

    rejects: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    seen: set[str] = set()
    inputs = ingested = 0
    bar = tqdm(total=total, unit="input", desc=f"ingest {cfg.dataset}", disable=None if progress is None else not progress,
               dynamic_ncols=True)
    info = {"by": "mmlake ingest", "sources": srcs, "kind": cfg.kind, **(created or {})}
    with lake.writer(cfg.dataset, shard_samples=cfg.shard_samples, created=info) as writer:
        for cand, out in _ordered_map(_Builder(cfg), all_candidates(), cfg.workers):
            inputs += 1
            bar.update(1)
            parts = out if isinstance(out, list) else [out] if isinstance(out, Sample) else None
            if parts is not None and any(p.key in seen for p in parts):
                dup = next(p.key for p in parts if p.key in seen)
                out = ("duplicate_key", f"key {dup!r} was already ingested from an earlier input")
                parts = None
            if parts is not None:  # one input; a document split at headings is several samples
                for p in parts:
                    writer.add(p)
                    seen.add(p.key)
                ingested += 1
            else:
                reason, detail = out
                reasons[reason] += 1
                rejects.append({"source": cand.source, "key": cand.key, "reason": reason, "detail": detail})
            if inputs % 256 == 0:
                bar.set_postfix(ingested=ingested, rejected=inputs - ingested)
        bar.set_postfix(ingested=ingested, rejected=inputs - ingested)
        bar.close()
        if inputs == 0:
            raise ValueError(f"no inputs found in {', '.join(srcs)}: expected images with .txt/.json "
                             "captions, a .jsonl/.parquet table, or WebDataset .tar files")
        if ingested == 0 and not cfg.allow_empty:
            shown = "; ".join(f"{r['key'] or r['source']}: {r['reason']} ({r['detail'][:120]})" for r in rejects[:3])
            raise EmptyIngest(f"ingested 0 of {inputs} inputs ({', '.join(f'{k}: {v}' for k, v in sorted(reasons.items()))})"
                              f"; nothing was registered. First rejects: {shown}. Fix the inputs, choose another "
                              "--kind, or pass --allow-empty to register an empty version", dict(reasons), inputs)
        if rejects:
            writer.set_rejects(_rejects_parquet(rejects), dict(reasons))
        version = writer.commit()
    return IngestResult(output=version.ref, manifest=version.uri, inputs=inputs, ingested=ingested,
                        rejected=dict(reasons), sources=srcs)


class EmptyIngest(ValueError):
    """No input was kept: nothing is committed or registered (unless ``allow_empty``)."""

    def __init__(self, message: str, rejected: dict[str, int], inputs: int) -> None:
        super().__init__(message)
        self.rejected, self.inputs = rejected, inputs


def _namespaces(srcs: list[str]) -> list[str]:
    """A short, unique, key-safe name per input (its file or folder name, numbered if repeated)."""
    base = [_safe_key(s.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0] or "in")[:40] for s in srcs]
    out = []
    for i, b in enumerate(base):
        out.append(b if base.count(b) == 1 else f"{b}{i}")
    return out


def _rejects_parquet(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({name: pa.array([r[name] for r in rows], pa.string())
                      for name in ("source", "key", "reason", "detail")})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()
