"""OCR engines behind one protocol: ``rapidocr`` (default), ``tesseract``, ``paddleocr``.

``engine.run(image) -> list[OcrLine]``: lines in reading order, each with a 4-point polygon
(pixel coordinates of the image given), text, confidence in [0, 1], and word boxes where the
engine gives them. Models are loaded by ``load()``, once per worker.

- ``rapidocr``: PaddleOCR's PP-OCR detection + recognition models on ONNX Runtime, the models
  that ship inside the ``rapidocr`` wheel (only those: nothing is downloaded).
- ``tesseract``: Debian's ``tesseract-ocr`` through ``pytesseract``, with ``OMP_THREAD_LIMIT=1``
  (one thread per worker process is several times cheaper than OpenMP's oversubscription).
- ``paddleocr``: used only when ``paddleocr``/``paddlepaddle`` are installed *and* a local
  ``model_dir`` is configured; otherwise ``load()`` raises ``OcrEngineUnavailable`` saying
  what is missing -- never a download attempt that hangs a job.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["OcrLine", "OcrEngine", "OcrEngineUnavailable", "ENGINES", "make_engine", "reading_order", "blocks_of_lines"]


class OcrEngineUnavailable(RuntimeError):
    """The engine cannot run here; the message says what to install or configure."""


@dataclass
class OcrLine:
    polygon: list[list[float]]
    text: str
    score: float
    words: list[tuple[list[list[float]], str, float]] = field(default_factory=list)
    #: the layout block the line belongs to (blocks are numbered in reading order)
    block: int | None = None

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        p = np.asarray(self.polygon, dtype=float)
        return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def reading_order(lines: list[OcrLine]) -> list[OcrLine]:
    """Lines in reading order, each with its ``block`` set.

    Lines that already carry blocks (the engine's own layout analysis, as Tesseract's
    block/paragraph/line numbers) keep the engine's order. Otherwise ``datalake.layout`` groups
    the line boxes into blocks and columns and orders them column by column: never a plain
    top-to-bottom sort, which alternates the lines of two columns."""
    if not lines:
        return []
    if all(ln.block is not None for ln in lines):
        return list(lines)
    from datalake.layout import Fragment, layout

    out: list[OcrLine] = []
    for k, b in enumerate(layout([Fragment(*ln.bbox, ln.text, ref=ln) for ln in lines], gutters=True)):
        for row in b.lines:
            for f in sorted(row.frags, key=lambda f: f.x0):
                f.ref.block = k
                out.append(f.ref)
    return out


def blocks_of_lines(lines: list[OcrLine]) -> list[tuple[float, float, float, float]]:
    """The box of each block (``OcrLine.block``), in block order."""
    boxes: dict[int, list[float]] = {}
    for ln in lines:
        if ln.block is None:
            continue
        x0, y0, x1, y1 = ln.bbox
        b = boxes.setdefault(ln.block, [x0, y0, x1, y1])
        b[:] = [min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1)]
    return [tuple(boxes[k]) for k in sorted(boxes)]  # type: ignore[misc]


class OcrEngine(ABC):
    name = ""

    def __init__(self, **options: Any) -> None:
        self.options = options
        self._loaded = False

    def load(self) -> None:
        self._loaded = True

    @abstractmethod
    def run(self, image: np.ndarray) -> list[OcrLine]:
        """Lines of ``image`` (HxWx3 RGB uint8), any order (``__call__`` sorts them)."""

    def __call__(self, image: np.ndarray) -> list[OcrLine]:
        if not self._loaded:
            self.load()
        return reading_order(self.run(image))


class RapidOcrEngine(OcrEngine):
    name = "rapidocr"

    def load(self) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError:
            raise OcrEngineUnavailable("the rapidocr engine needs the rapidocr and onnxruntime packages: "
                                       "pip install 'mmlake[ocr]'") from None
        # quiet: rapidocr logs every model it loads to stdout, which would corrupt --json output.
        # The 180-degree line classifier is off unless asked for (angle_cls=True, for photos with
        # upside-down text): it squeezes each line to 192 px wide and, on long lines of small
        # text, flips upright lines -- which turned 12-16 px pages into garbage (CER 12-20 %
        # with it, 0 % without; benchmarks/ocr.py).
        params: dict[str, Any] = {"Global.log_level": "warning", "Global.use_cls": bool(self.options.get("angle_cls"))}
        if self.options.get("threads"):
            params["EngineConfig.onnxruntime.intra_op_num_threads"] = int(self.options["threads"])
            params["EngineConfig.onnxruntime.inter_op_num_threads"] = 1
        self.engine = RapidOCR(params=params)
        super().load()

    def run(self, image: np.ndarray) -> list[OcrLine]:
        bgr = np.ascontiguousarray(image[:, :, ::-1])  # rapidocr expects OpenCV's BGR order
        res = self.engine(bgr, return_word_box=True)
        if res.boxes is None or res.txts is None:
            return []
        out = []
        words_all = getattr(res, "word_results", None) or [None] * len(res.txts)
        for box, text, score, words in zip(res.boxes, res.txts, res.scores, words_all, strict=False):
            ws = []
            for w in words or ():
                try:
                    wt, wscore, wbox = w
                    ws.append(([[float(x), float(y)] for x, y in wbox], str(wt), float(wscore)))
                except (TypeError, ValueError):
                    continue
            out.append(OcrLine([[float(x), float(y)] for x, y in box], str(text), float(score), ws))
        return out


class TesseractEngine(OcrEngine):
    name = "tesseract"

    def load(self) -> None:
        os.environ["OMP_THREAD_LIMIT"] = str(int(self.options.get("threads") or 1))
        try:
            import pytesseract
        except ImportError:
            raise OcrEngineUnavailable("the tesseract engine needs pytesseract: pip install 'mmlake[ocr]'") from None
        try:
            pytesseract.get_tesseract_version()
        except Exception:  # noqa: BLE001 - TesseractNotFoundError and friends
            raise OcrEngineUnavailable("the tesseract engine needs the tesseract binary: "
                                       "apt-get install tesseract-ocr (make setup does)") from None
        self.tess = pytesseract
        super().load()

    def run(self, image: np.ndarray) -> list[OcrLine]:
        d = self.tess.image_to_data(image, lang=self.options.get("lang", "eng"),
                                    config=self.options.get("config", "--psm 3"),
                                    output_type=self.tess.Output.DICT)
        groups: dict[tuple[int, int, int], list[int]] = {}  # insertion order: Tesseract's reading order
        for i, text in enumerate(d["text"]):
            if text.strip() and float(d["conf"][i]) >= 0:
                groups.setdefault((d["block_num"][i], d["par_num"][i], d["line_num"][i]), []).append(i)
        out = []
        block_ids: dict[int, int] = {}
        for (blk, _, _), idx in groups.items():
            words = []
            for i in idx:
                x, y, w, h = d["left"][i], d["top"][i], d["width"][i], d["height"][i]
                words.append(([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], d["text"][i],
                              float(d["conf"][i]) / 100.0))
            xs = [p[0] for wd in words for p in wd[0]]
            ys = [p[1] for wd in words for p in wd[0]]
            poly = [[min(xs), min(ys)], [max(xs), min(ys)], [max(xs), max(ys)], [min(xs), max(ys)]]
            out.append(OcrLine([[float(a), float(b)] for a, b in poly], " ".join(w[1] for w in words),
                               float(np.mean([w[2] for w in words])),
                               [([[float(a), float(b)] for a, b in w[0]], w[1], w[2]) for w in words],
                               block=block_ids.setdefault(blk, len(block_ids))))
        return out


class PaddleOcrEngine(OcrEngine):
    name = "paddleocr"

    def load(self) -> None:
        missing = []
        try:
            import paddleocr  # noqa: F401
        except ImportError:
            missing.append("the paddleocr package")
        try:
            import paddle  # noqa: F401
        except ImportError:
            missing.append("the paddlepaddle package")
        model_dir = self.options.get("model_dir")
        if not model_dir:
            missing.append("a local model directory (option model_dir: PaddleOCR would otherwise download "
                           "its models, which a job must not do)")
        elif not Path(model_dir).is_dir():
            missing.append(f"the model directory {model_dir} (it does not exist)")
        if missing:
            raise OcrEngineUnavailable("the paddleocr engine needs " + ", ".join(missing)
                                       + "; or use engine: rapidocr (the same PP-OCR models, bundled)")
        from paddleocr import PaddleOCR

        d = Path(model_dir)  # type: ignore[arg-type]
        self.engine = PaddleOCR(det_model_dir=str(d / "det"), rec_model_dir=str(d / "rec"),
                                cls_model_dir=str(d / "cls"), use_angle_cls=False, show_log=False)
        super().load()

    def run(self, image: np.ndarray) -> list[OcrLine]:
        res = self.engine.ocr(image, cls=False)
        return [OcrLine([[float(x), float(y)] for x, y in box], str(t), float(s)) for box, (t, s) in (res[0] or [])]


ENGINES: dict[str, type[OcrEngine]] = {e.name: e for e in (RapidOcrEngine, TesseractEngine, PaddleOcrEngine)}


def make_engine(name: str, **options: Any) -> OcrEngine:
    if name not in ENGINES:
        raise ValueError(f"unknown OCR engine {name!r}: use one of {sorted(ENGINES)}")
    return ENGINES[name](**options)
