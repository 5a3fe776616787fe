"""OCR as pipeline stages.

``ocr`` (a map stage): runs an engine (``pipelines.ocr.engines``: ``rapidocr`` by default,
``tesseract``, ``paddleocr``) over each image of a sample, loaded once per worker in
``setup()``; adds annotations of role ``ocr_line`` (polygon + text + score) and, where the
engine gives them, ``ocr_word``; writes ``meta.ocr`` per image: engine, page text in reading
order, mean confidence, text-area ratio (share of the image covered by text polygons), number
of lines. With ``as_transcript: true`` the sample becomes an ``ocr`` sample whose text is the
transcript (optionally with line boxes as ``{polygon:i}`` placeholders).

An image whose text covers more than ``infographic_area`` of it *and* whose lines are mostly
scattered labels (under ``infographic_prose`` of its lines in paragraphs of three or more
lines; a page of prose is nearly all paragraphs) is an infographic, where OCR alone would teach
the wrong thing: it is marked ``meta.ocr_route = "infographic"`` and gets an
empty ``meta.description`` slot beside its OCR text, for a captioner to fill.

``ocr_filter`` (a filter on ``meta.ocr``): ``not_ocred`` (no ``ocr`` stage ran on its images),
``low_ocr_confidence``, ``no_text`` / ``too_little_text``,
and ``mostly_text`` (text area above ``max_text_area``; ``keep_mostly_text: true`` keeps them).
"""

from __future__ import annotations

import dataclasses
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from datalake.sample import Annotation, MediaPart, Sample, TextPart
from pipelines.ocr.engines import ENGINES, OcrEngine, OcrEngineUnavailable, OcrLine, blocks_of_lines, make_engine
from pipelines.stage import FilterStage, MapStage, Reject, register

__all__ = ["OcrStage", "OcrFilter", "ocr_image", "polygon_area"]


def polygon_area(points: list[list[float]]) -> float:
    p = np.asarray(points, dtype=float)
    x, y = p[:, 0], p[:, 1]
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def ocr_image(engine: OcrEngine, data: bytes, max_side: int = 2000) -> tuple[list[OcrLine], tuple[int, int]]:
    """OCR encoded image bytes; polygons come back in the image's own pixel coordinates."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = min(1.0, max_side / max(w, h))
        if s < 1.0:
            im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
        arr = np.asarray(im)
    lines = engine(arr)
    if s < 1.0:
        for ln in lines:
            ln.polygon = [[x / s, y / s] for x, y in ln.polygon]
            ln.words = [([[x / s, y / s] for x, y in poly], t, sc) for poly, t, sc in ln.words]
    return lines, (w, h)


def _clip(points: list[list[float]], w: int, h: int) -> tuple[tuple[float, float], ...]:
    return tuple((min(max(float(x), 0.0), float(w)), min(max(float(y), 0.0), float(h))) for x, y in points)


def _retokenize(doc: dict[str, Any], sample: Sample, pages: dict[str, Any]) -> dict[str, Any]:
    """The document's token estimate with OCR text counted on pages that had no text layer."""
    from datalake.pdf import estimate_tokens, layer_text

    layer = list(doc.get("text_layer", []))
    per_page, chars, sizes = [], 0, []
    for i, m in enumerate(sample.media):
        n = len(layer_text(sample, i)) if i < len(layer) and layer[i] else len(pages.get(m.name, {}).get("text", ""))
        per_page.append(estimate_tokens(n, [(m.width, m.height)]))
        chars += n
        sizes.append((m.width, m.height))
    return {**doc, "tokens_per_page": per_page, "token_estimate": estimate_tokens(chars, sizes)}


@register
class OcrStage(MapStage):
    name = "ocr"

    @dataclass(frozen=True)
    class Config:
        engine: str = "rapidocr"
        min_score: float = 0.5
        words: bool = True
        max_side: int = 2000
        as_transcript: bool = False
        with_boxes: bool = False
        lang: str = "eng"
        model_dir: str | None = None
        infographic_area: float = 0.35
        infographic_prose: float = 0.6
        #: documents (``meta.document``): OCR only the pages without a text layer
        only_missing_text: bool = False
        #: rapidocr: classify lines as upside down and turn them (photos); off for pages
        angle_cls: bool = False
        #: threads per worker for the engine (ONNX Runtime intra-op threads; Tesseract's
        #: OMP_THREAD_LIMIT); default 1, so N workers use N cores instead of oversubscribing them
        threads: int = 1

        def __post_init__(self) -> None:
            if self.engine not in ENGINES:
                raise ValueError(f"engine must be one of {sorted(ENGINES)}, got {self.engine!r}")
            if not 0 <= self.min_score <= 1:
                raise ValueError("min_score must be in [0, 1]")
            if self.threads < 1:
                raise ValueError("threads must be >= 1")

    def setup(self) -> None:
        opts: dict[str, Any] = {"lang": self.config.lang, "threads": self.config.threads}
        if self.config.angle_cls:
            opts["angle_cls"] = True
        if self.config.model_dir:
            opts["model_dir"] = self.config.model_dir
        self.engine = make_engine(self.config.engine, **opts)
        self.engine.load()  # once per worker; a missing engine fails the job here, with the reason

    def map(self, sample: Sample) -> Sample:
        if not hasattr(self, "engine"):
            self.setup()
        anns = list(sample.annotations)
        meta: dict[str, Any] = dict(sample.meta)
        pages: dict[str, Any] = {}
        line_idx: list[int] = []
        texts: list[str] = []
        doc = sample.meta.get("document") if isinstance(sample.meta.get("document"), dict) else None
        layer = list(doc.get("text_layer", [])) if doc else []
        for i, m in enumerate(sample.media):
            if not m.mime.startswith("image/"):
                continue
            if self.config.only_missing_text and i < len(layer) and layer[i]:
                continue
            try:
                lines, (w, h) = ocr_image(self.engine, bytes(sample.blobs[m.name]), self.config.max_side)
            except OcrEngineUnavailable:
                raise
            except Exception as exc:  # noqa: BLE001 - one bad image is this sample's problem
                raise Reject("ocr_failed", f"{m.name}: {type(exc).__name__}: {exc}") from None
            lines = [ln for ln in lines if ln.score >= self.config.min_score and ln.text.strip()]
            area = 0.0
            for ln in lines:
                line_idx.append(len(anns))
                anns.append(Annotation(i, "polygon", points=_clip(ln.polygon, w, h), text=ln.text,
                                       score=round(ln.score, 4), role="ocr_line"))
                area += polygon_area(ln.polygon)
                if self.config.words:
                    for poly, t, sc in ln.words:
                        anns.append(Annotation(i, "polygon", points=_clip(poly, w, h), text=t, score=round(sc, 4),
                                               role="ocr_word"))
            for k, (x0, y0, x1, y1) in enumerate(blocks_of_lines(lines)):
                anns.append(Annotation(i, "box", xyxy=(max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)),
                                       label=f"block {k}", role="layout_block", attrs={"order": k}))
            page_text = "\n".join(ln.text for ln in lines)
            texts.append(page_text)
            per_block = Counter(ln.block for ln in lines)
            prose = sum(n for n in per_block.values() if n >= 3) / len(lines) if lines else 0.0
            pages[m.name] = {"engine": self.engine.name, "text": page_text, "lines": len(lines),
                             "blocks": len(per_block), "prose_share": round(prose, 4),
                             "mean_confidence": round(float(np.mean([ln.score for ln in lines])), 4) if lines else 0.0,
                             "text_area_ratio": round(min(1.0, area / max(1, w * h)), 4)}
            if i < len(layer) and layer[i]:  # a born-digital page: OCR measured against its text layer
                from datalake.pdf import layer_text
                from pipelines.ocr.quality import cer

                truth = layer_text(sample, i)
                pages[m.name]["cer_vs_text_layer"] = round(cer(page_text, truth), 4)
        meta["ocr"] = pages
        content = list(sample.content)
        if doc is not None:  # scanned pages of a document: their text is the OCR text, after the page
            for i, m in enumerate(sample.media):
                if m.name in pages and not (i < len(layer) and layer[i]) and pages[m.name]["text"]:
                    at = next(j for j, p in enumerate(content) if isinstance(p, MediaPart) and p.media == i)
                    content.insert(at + 1, TextPart(pages[m.name]["text"]))
            meta["document"] = _retokenize(doc, sample, pages)
        if any(p["text_area_ratio"] > self.config.infographic_area and p["prose_share"] < self.config.infographic_prose
               for p in pages.values()):
            meta["ocr_route"] = "infographic"
            meta.setdefault("description", "")
        out = dataclasses.replace(sample, annotations=tuple(anns), meta=meta, content=tuple(content))
        if self.config.as_transcript and pages:
            parts: list[Any] = []
            for i, m in enumerate(sample.media):
                if m.name in pages:
                    parts.append(MediaPart(i))
            body = []
            for j in line_idx:
                a = anns[j]
                body.append(f"{a.text} {{polygon:{j}}}" if self.config.with_boxes else str(a.text))
            parts.append(TextPart("\n".join(body)))
            out = dataclasses.replace(out, kind="ocr", content=tuple(parts), messages=())
        return out


@register
class OcrFilter(FilterStage):
    name = "ocr_filter"

    @dataclass(frozen=True)
    class Config:
        min_confidence: float = 0.0
        min_lines: int = 0
        max_text_area: float | None = None
        keep_mostly_text: bool = False

    def score(self, sample: Sample) -> dict[str, Any]:
        pages = sample.meta.get("ocr")
        if not isinstance(pages, dict) or not pages:  # no image was OCRed (or no ocr stage ran)
            return {"ocr": False, "lines": 0, "mean_confidence": 0.0, "text_area_ratio": 0.0}
        return {"ocr": True, "lines": sum(p["lines"] for p in pages.values()),
                "mean_confidence": min(p["mean_confidence"] for p in pages.values()),
                "text_area_ratio": max(p["text_area_ratio"] for p in pages.values())}

    def decide(self, s: dict[str, Any]) -> str | None:
        c = self.config
        if not s.get("ocr", True):
            return "not_ocred"
        if s["lines"] < c.min_lines:
            return "no_text" if s["lines"] == 0 else "too_little_text"
        if s["lines"] and s["mean_confidence"] < c.min_confidence:
            return "low_ocr_confidence"
        if c.max_text_area is not None and s["text_area_ratio"] > c.max_text_area and not c.keep_mostly_text:
            return "mostly_text"
        return None
