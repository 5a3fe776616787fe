"""PDF documents -> one long-document sample: pages rendered in order, the text layer with
positions where the PDF has one (ground truth for OCR, and the text itself), a token estimate.

Rendering and text extraction use ``pypdfium2`` (PDFium, in the ``ocr`` extra). A page without
a text layer (a scan) gets no text part: the pipeline's ``ocr`` stage fills it in.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from datalake.layout import Fragment, layout, line_text, ordered_text

__all__ = ["PdfPage", "render_pdf", "pdf_sample", "PdfError", "estimate_tokens", "page_samples", "split_pages", "layer_text", "page_blocks"]


class PdfError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass
class PdfPage:
    png: bytes
    width: int
    height: int
    text: str
    lines: list[tuple[list[tuple[float, float]], str]] = field(default_factory=list)
    #: layout blocks in reading order (polygons), and the block of each line
    blocks: list[list[tuple[float, float]]] = field(default_factory=list)
    line_blocks: list[int] = field(default_factory=list)


def _clip_box(poly: list[tuple[float, float]], w: int, h: int) -> list[tuple[float, float]]:
    return [(min(max(x, 0.0), float(w)), min(max(y, 0.0), float(h))) for x, y in poly]


def page_blocks(tp: Any, page_height: float, scale: float) -> list[Any]:
    """A PDFium text page as layout blocks in reading order (pixel coordinates at ``scale``).

    Words come from PDFium's characters with their boxes: a word ends at whitespace or where
    the next character leaves the baseline or jumps horizontally; ``datalake.layout`` then joins
    words on one baseline into lines, lines into blocks, and orders the blocks (columns one
    after the other). Never a fixed-pixel row bucketing, which cut words and interleaved lines.
    """
    n = tp.count_chars()
    if n <= 0:
        return []
    text = tp.get_text_range(0, n)
    per_char = len(text) == n
    words: list[Fragment] = []
    cur: list[tuple[float, float, float, float]] = []
    chars: list[str] = []
    run = 0  # PDFium's line breaks in the text stream

    def flush() -> None:
        if cur and "".join(chars).strip():
            words.append(Fragment(min(b[0] for b in cur), min(b[1] for b in cur), max(b[2] for b in cur),
                                  max(b[3] for b in cur), "".join(chars), run=run))
        cur.clear()
        chars.clear()

    for i in range(n):
        ch = text[i] if per_char else tp.get_text_range(i, 1)
        if not ch or ch.isspace():
            flush()
            run += ch in "\r\n"
            continue
        left, bottom, right, top = tp.get_charbox(i, loose=True)
        box = (left * scale, (page_height - top) * scale, right * scale, (page_height - bottom) * scale)
        if cur:
            last = cur[-1]
            h = max(min(last[3] - last[1], box[3] - box[1]), 1e-3)
            same_line = min(last[3], box[3]) - max(last[1], box[1]) >= 0.5 * h
            if not same_line or box[0] - last[2] > 0.15 * h or box[0] < last[0] - 0.5 * h:
                flush()
        cur.append(box)
        chars.append(ch)
    flush()
    return layout(words)


def render_pdf(data: bytes, dpi: int = 110, max_pages: int = 500) -> list[PdfPage]:
    """Every page as PNG at ``dpi`` with its text-layer lines in pixel coordinates."""
    try:
        import pypdfium2 as pdfium
    except ImportError:
        raise PdfError("pdf_support_missing", "reading PDFs needs pypdfium2: pip install 'mmlake[ocr]'") from None
    try:
        pdf = pdfium.PdfDocument(data)
    except Exception as exc:  # noqa: BLE001 - PdfiumError and friends: this file's problem
        raise PdfError("unreadable_pdf", str(exc)) from None
    if len(pdf) == 0:
        raise PdfError("empty_pdf", "the PDF has no pages")
    if len(pdf) > max_pages:
        raise PdfError("too_many_pages", f"{len(pdf)} pages > max_pages {max_pages}")
    scale = dpi / 72.0
    pages = []
    for i in range(len(pdf)):
        page = pdf[i]
        _, ph = page.get_size()
        img = page.render(scale=scale).to_pil().convert("RGB")
        buf = io.BytesIO()
        img.save(buf, "PNG", optimize=False)
        blocks = page_blocks(page.get_textpage(), ph, scale)
        lines, boxes = [], []
        for b in blocks:
            x0, y0, x1, y1 = b.box
            boxes.append(_clip_box([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], img.width, img.height))
            for ln in b.lines:
                t = line_text(ln.text).strip()
                if t:
                    poly = [(ln.x0, ln.y0), (ln.x1, ln.y0), (ln.x1, ln.y1), (ln.x0, ln.y1)]
                    lines.append((_clip_box(poly, img.width, img.height), t, len(boxes) - 1))
        text = ordered_text(blocks).strip()
        pages.append(PdfPage(buf.getvalue(), img.width, img.height, text, [(p, t) for p, t, _ in lines],
                             boxes, [b for _, _, b in lines]))
    return pages


def estimate_tokens(text_chars: int, pages: list[tuple[int, int]], max_pixels: int = 1_048_576) -> int:
    """Tokens the loader will need: ~4 characters per text token, one token per merged 28x28 patch."""
    img = 0
    for w, h in pages:
        s = min(1.0, (max_pixels / (w * h)) ** 0.5)
        img += max(1, int(w * s) // 28) * max(1, int(h * s) // 28) + 2
    return text_chars // 4 + img


def pdf_sample(key: str, data: bytes, *, source: str, license: str | None = None, dpi: int = 110) -> Any:
    """A PDF as one ``interleaved`` long-document sample (pages in order, text per page)."""
    from datalake.sample import Annotation, Media, MediaPart, Sample, Source, TextPart

    pages = render_pdf(data, dpi)
    media, content, anns = [], [], []
    for i, p in enumerate(pages):
        media.append(Media(f"{i}.png", "image/png", p.width, p.height))
        content.append(MediaPart(i))
        if p.text:
            content.append(TextPart(p.text))
        for poly, t in p.lines:
            anns.append(Annotation(i, "polygon", points=tuple(poly), text=t, role="text_layer"))
        for k, poly in enumerate(p.blocks):
            x0, y0 = poly[0]
            x1, y1 = poly[2]
            anns.append(Annotation(i, "box", xyxy=(x0, y0, x1, y1), label=f"block {k}", role="layout_block",
                                   attrs={"order": k}))
    chars = sum(len(p.text) for p in pages)
    meta = {"document": {"pages": len(pages), "dpi": dpi, "text_layer": [bool(p.text) for p in pages],
                         "tokens_per_page": [estimate_tokens(len(p.text), [(p.width, p.height)]) for p in pages],
                         "token_estimate": estimate_tokens(chars, [(p.width, p.height) for p in pages])}}
    return Sample(key=key, kind="interleaved", source=Source(source, license), media=tuple(media),
                  content=tuple(content), annotations=tuple(anns), meta=meta,
                  blobs={f"{i}.png": p.png for i, p in enumerate(pages)})


def layer_text(doc: Any, i: int) -> str:
    """Page ``i``'s text-layer text in reading order: the text part after its image (written by
    ``pdf_sample``, soft hyphens joined); older samples without it: their lines joined."""
    from datalake.sample import MediaPart, TextPart

    parts = list(doc.content)
    for j, p in enumerate(parts):
        if isinstance(p, MediaPart) and p.media == i:
            if j + 1 < len(parts) and isinstance(parts[j + 1], TextPart):
                return str(parts[j + 1].text)
            break
    return "\n".join(str(a.text) for a in doc.annotations if a.media == i and a.role == "text_layer")


def page_samples(doc: Any) -> list[Any]:
    """A long-document sample's pages as ``ocr`` samples (image -> that page's text), keys
    ``<doc>-p0000`` ...; a page's text is its text layer, or its OCR text (after the ``ocr``
    stage) where it had none; pages without any text are left out. The page's annotations
    (text-layer lines, OCR lines/words) come along on media 0; ``meta.page`` says where it came
    from."""
    import dataclasses

    from datalake.sample import Media, MediaPart, Sample, TextPart

    d = doc.meta.get("document") or {}
    layer = list(d.get("text_layer", []))
    ocr = doc.meta.get("ocr") or {}
    out = []
    for i, m in enumerate(doc.media):
        has_layer = i < len(layer) and bool(layer[i])
        text = layer_text(doc, i) if has_layer else str((ocr.get(m.name) or {}).get("text") or "")
        if not text.strip():
            continue
        ext = m.name.rpartition(".")[2]
        anns = tuple(dataclasses.replace(a, media=0) for a in doc.annotations if a.media == i)
        meta: dict[str, Any] = {"page": {"document": doc.key, "index": i, "pages": len(doc.media),
                                         "text_from": "text_layer" if has_layer else "ocr"},
                                "token_estimate": estimate_tokens(len(text), [(m.width, m.height)])}
        if m.name in ocr:
            meta["ocr"] = {f"0.{ext}": ocr[m.name]}
        out.append(Sample(key=f"{doc.key}-p{i:04d}", kind="ocr", source=doc.source,
                          media=(Media(f"0.{ext}", m.mime, m.width, m.height),),
                          content=(MediaPart(0), TextPart(text)), annotations=anns, meta=meta,
                          blobs={f"0.{ext}": doc.blobs[m.name]}))
    return out


def split_pages(client: Any, lake: Any, ref: str, dataset: str, *, progress: bool | None = None) -> dict[str, Any]:
    """Write the pages of every document in version ``ref`` as a new version of ``dataset``,
    recorded as a run with ``ref`` as its input (lineage); counts: documents in, pages out,
    pages left out for having no text."""
    from tqdm import tqdm

    from datalake.version import DatasetVersion

    info = client.resolve(ref, for_read=True)
    version = DatasetVersion.open(info.manifest_uri)
    run = client.start_run("job", f"pages of {info.ref}", inputs=[info.ref],
                           spec={"type": "document_pages", "input": info.ref, "dataset": dataset})
    docs = pages = empty = 0
    try:
        with lake.writer(dataset, created={"by": "mmlake documents pages", "run_id": run.id, "input": info.ref}) as w:
            for s in tqdm(version, total=len(version), unit="doc", desc=f"pages of {info.ref}",
                          disable=None if progress is None else not progress):
                docs += 1
                got = page_samples(s)
                empty += len(s.media) - len(got)
                for p in got:
                    w.add(p)
                    pages += 1
            if not pages:
                raise ValueError(f"{info.ref} has no page with text (run the ocr stage on scanned documents first)")
            out = w.commit()
    except Exception as exc:
        client.finish_run(run.id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    counts = {"inputs": docs, "pages": pages, "pages_without_text": empty}
    run = client.finish_run(run.id, "succeeded", counts=counts, outputs=[out])
    return {"input": info.ref, "output": run.outputs[0], "run": run.id, **counts}
