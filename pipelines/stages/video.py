"""Video stages: ``video_shots``, ``video_filter``, ``video_caption``, ``dedupe_video``.

* ``video_shots`` (map): shot boundaries (PySceneDetect; detector and parameters in lineage),
  forced cuts past ``max_shot_s``, a ``segment`` annotation per shot, keyframes (first and
  middle frame of each shot) stored as JPEG images in the sample, per-shot measures (motion,
  brightness, colours), and, where asked, a clip file per shot by stream copy (``clips: copy``)
  or re-encoded (``clips: reencode``), counted. The original video stays as it is.
* ``video_filter`` (filter): duration, resolution, aspect, static videos (motion score),
  near-black and near-uniform videos, from the measures (scores never depend on thresholds).
* ``video_caption`` (map): dense captions per shot from a captioner (``measured``: offline,
  only what was measured, plus text read by an OCR engine in the keyframes; ``model``: a VLM
  behind an OpenAI-compatible server); the text holds ``{segment:i}`` placeholders, rendered to
  timestamps at tokenization.
* ``dedupe_video`` (dedupe): near-duplicate videos by the pHash + colour layout of a mosaic of
  their keyframes, through the image dedupe's bands and verification.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Any

from datalake.sample import Annotation, Media, MediaPart, Sample, TextPart
from pipelines.stage import TASK_LAKE, FilterStage, MapStage, Reject, register
from pipelines.stages.dedupe import DedupeImage
from pipelines.video.shots import ShotConfig

__all__ = ["VideoShots", "VideoFilter", "VideoCaption", "DedupeVideo", "video_media"]


def video_media(sample: Sample) -> tuple[int, Media, bytes]:
    for i, m in enumerate(sample.media):
        if m.mime.startswith("video/"):
            data = sample.blobs.get(m.name)
            if data is None:
                raise Reject("missing_media", f"no bytes for {m.name}")
            return i, m, bytes(data)
    raise Reject("no_video", f"a {sample.kind} sample without a video")


def _shot_meta(sample: Sample) -> dict[str, Any]:
    vs = sample.meta.get("video_shots")
    if not isinstance(vs, dict) or not vs.get("shots"):
        raise Reject("no_shots", "run video_shots before this stage (it finds the shots and keyframes)")
    return vs


@register
class VideoShots(MapStage):
    name = "video_shots"

    @dataclass(frozen=True)
    class Config(ShotConfig):  # the detector's parameters, then what the stage keeps
        keyframes: tuple[str, ...] = ("first", "middle")
        keyframe_max_side: int = 448
        #: frames sampled for the measures (motion, brightness, colours), every this many seconds
        measure_step_s: float = 0.08
        measure_side: int = 160
        #: none: shots are timestamps on the original file; copy: a clip file per shot by stream
        #: copy (whole GOPs, starts at a keyframe); reencode: a clip per shot cut exactly
        clips: str = "none"
        time_limit_s: float = 120.0

        def __post_init__(self) -> None:
            super().__post_init__()
            object.__setattr__(self, "keyframes", tuple(self.keyframes))
            if not self.keyframes or set(self.keyframes) - {"first", "middle", "last"}:
                raise ValueError("keyframes must be a non-empty list of first, middle, last")
            if self.clips not in ("none", "copy", "reencode"):
                raise ValueError(f"clips must be none, copy or reencode, got {self.clips!r}")
            if self.measure_step_s <= 0 or self.keyframe_max_side < 32 or self.measure_side < 32:
                raise ValueError("measure_step_s must be > 0; keyframe_max_side and measure_side >= 32")

    def describe(self) -> dict[str, Any]:  # lineage: the detector's own version with its parameters
        import scenedetect

        return {self.name: {**dataclasses.asdict(self.config), "scenedetect": scenedetect.__version__}}

    def map(self, sample: Sample) -> Sample:
        from datalake.video import VideoError, cut_clip, encode_jpeg, sample_frames
        from pipelines.video.measure import measure_shots
        from pipelines.video.shots import detect_shots, keyframe_plan

        c = self.config
        sample = _without_shots(sample)
        vi, m, data = video_media(sample)
        info = (sample.meta.get("video") or {}).get(m.name) or {}
        fps = float(info.get("fps") or m.fps or 0) or None
        try:
            shots = detect_shots(data, c, frames=info.get("frames"), fps=fps)
            if not shots:
                raise Reject("zero_length_video", f"{m.name}: no frames")
            plan = keyframe_plan(shots, c.keyframes)
            rate = fps or shots[-1].f1 / max(shots[-1].t1, 1e-6)
            times = [(f + 0.5) / rate for _, f, _ in plan]  # mid-frame: no rounding onto the previous frame
            keys, sampled = sample_frames(data, times, c.keyframe_max_side, c.measure_step_s, c.measure_side,
                                          c.time_limit_s)
        except VideoError as exc:
            raise Reject(exc.reason, f"{m.name}: {exc.detail}") from None
        scale = m.width / sampled[0][1].width if sampled else 1.0
        measures = measure_shots(sampled, shots, scale)
        media, blobs = list(sample.media), dict(sample.blobs)
        anns = [a for a in sample.annotations if not (a.type == "segment" and a.label == "shot" and a.media == vi)]
        kept_anns = len(anns)
        kf = []
        for j, ((shot, f, role), (_t, im)) in enumerate(zip(plan, keys, strict=True)):
            name = f"k{j}.jpg"
            media.append(Media(name, "image/jpeg", im.width, im.height))
            blobs[name] = encode_jpeg(im)
            kf.append({"media": len(media) - 1, "shot": shot, "frame": f, "t": round(f / rate, 6), "role": role})
        clips: list[dict[str, Any]] = []
        for s in shots:
            anns.append(Annotation(vi, "segment", label="shot", t0=s.t0, t1=s.t1,
                                   attrs={"shot": s.index, "boundary": s.boundary}))
            if c.clips != "none":
                try:
                    clip, start, end = cut_clip(data, s.t0, s.t1, reencode=c.clips == "reencode")
                except Exception as exc:  # noqa: BLE001 - a clip that cannot be cut is this sample's problem
                    raise Reject("clip_failed", f"{m.name} shot {s.index}: {exc}") from None
                name = f"c{s.index}.mp4"
                media.append(Media(name, "video/mp4", m.width, m.height, duration_s=round(end - start, 6)
                                   if end != float("inf") else None, fps=m.fps))
                blobs[name] = clip
                clips.append({"media": len(media) - 1, "shot": s.index, "start": start, "end": end,
                              "mode": c.clips})
        meta = dict(sample.meta)
        meta["video_shots"] = {
            "media": vi, "shots": [s.to_json() for s in shots], "keyframes": kf,
            "measures": [x.to_json() for x in measures], "segments": list(range(kept_anns, kept_anns + len(shots))),
            "clips": clips, "counts": {"shots": len(shots), "cuts": sum(s.boundary == "cut" for s in shots),
                                       "fades": sum(s.boundary == "fade" for s in shots),
                                       "forced": sum(s.boundary == "forced" for s in shots),
                                       "clips_copied": sum(x["mode"] == "copy" for x in clips),
                                       "clips_reencoded": sum(x["mode"] == "reencode" for x in clips)}}
        return dataclasses.replace(sample, media=tuple(media), blobs=blobs, annotations=tuple(anns), meta=meta)


def _without_shots(sample: Sample) -> Sample:
    """``sample`` as it was before ``video_shots`` (a re-run replaces its shots): its keyframes
    and clips, its shot annotations (the trailing ones it appended) and the captions that point
    at them go."""
    import re

    from datalake.sample import drop_media

    vs = sample.meta.get("video_shots")
    if not isinstance(vs, dict):
        return sample
    media = {int(k["media"]) for k in (*vs.get("keyframes", ()), *vs.get("clips", ()))}
    segs = set(vs.get("segments") or ())
    n = len(sample.annotations)
    if segs and segs != set(range(n - len(segs), n)):
        raise Reject("shots_not_trailing", "annotations were added after video_shots: run it on the source sample")
    alts = "|".join(map(str, sorted(segs)))
    gone = re.compile(r"\{segment:(" + alts + r")\}") if segs else None
    content = tuple(p for p in sample.content if not (isinstance(p, TextPart) and gone and gone.search(p.text)))
    meta = {k: v for k, v in sample.meta.items() if k not in ("video_shots", "caption")}
    out = dataclasses.replace(sample, content=content, annotations=sample.annotations[: n - len(segs)], meta=meta)
    return drop_media(out, media)


@register
class VideoFilter(FilterStage):
    name = "video_filter"

    @dataclass(frozen=True)
    class Config:
        min_duration_s: float = 1.0
        max_duration_s: float | None = None
        min_side: int = 64
        max_aspect: float = 3.0
        #: static: mean luma change between sampled frames (0-255) below this
        min_motion: float = 0.2
        #: near black: mean luma below this
        min_brightness: float = 16.0
        #: near uniform: luma standard deviation below this
        min_contrast: float = 4.0

    def score(self, sample: Sample) -> dict[str, Any]:
        vi, m, _ = video_media(sample)
        vs = _shot_meta(sample)
        info = (sample.meta.get("video") or {}).get(m.name) or {}
        w, h = m.width, m.height
        if int(info.get("rotation", 0)) % 180 == 90:
            w, h = h, w
        ms = [x for x in vs["measures"] if x["frames"]]
        weights = [x["frames"] for x in ms] or [1]
        def avg(k: str) -> float:
            return sum(x[k] * x["frames"] for x in ms) / sum(weights) if ms else 0.0
        return {"duration_s": float(m.duration_s or info.get("duration_s") or 0.0), "width": w, "height": h,
                "aspect": max(w, h) / max(1, min(w, h)), "motion": round(avg("motion"), 4),
                "brightness": round(avg("brightness"), 3), "contrast": round(avg("contrast"), 3)}

    def decide(self, s: dict[str, Any]) -> str | None:
        c = self.config
        if s["duration_s"] < c.min_duration_s:
            return "too_short"
        if c.max_duration_s is not None and s["duration_s"] > c.max_duration_s:
            return "too_long"
        if min(s["width"], s["height"]) < c.min_side:
            return "too_small"
        if s["aspect"] > c.max_aspect:
            return "bad_aspect"
        if s["brightness"] < c.min_brightness:
            return "near_black"
        if s["contrast"] < c.min_contrast:
            return "near_uniform"
        if s["motion"] < c.min_motion:
            return "static"
        return None


@register
class VideoCaption(MapStage):
    name = "video_caption"

    @dataclass(frozen=True)
    class Config:
        captioner: str = "measured"
        #: an OCR engine (rapidocr, tesseract) reading text in the keyframes; null: none
        ocr: str | None = None
        ocr_min_score: float = 0.6
        #: model captioner: the server (unset: MMLAKE_QA_BASE_URL / MMLAKE_QA_MODEL)
        base_url: str | None = None
        model: str | None = None
        api_key_env: str = "MMLAKE_QA_API_KEY"
        rps: float | None = None
        timeout_s: float = 60.0
        max_retries: int = 4
        backoff_s: float = 0.5
        max_frames: int = 4
        max_tokens: int = 120

        def __post_init__(self) -> None:
            from pipelines.video.caption import CAPTIONERS

            if self.captioner not in CAPTIONERS:
                raise ValueError(f"captioner must be one of {list(CAPTIONERS)}, got {self.captioner!r}")
            if self.ocr is not None and self.ocr not in ("rapidocr", "tesseract"):
                raise ValueError(f"ocr must be rapidocr, tesseract or null, got {self.ocr!r}")

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._ocr: Any = None
        self._captioners: dict[str | None, Any] = {}

    def describe(self) -> dict[str, Any]:
        from mmlake.settings import load_settings

        d = dataclasses.asdict(self.config)
        if self.config.captioner == "model":
            s = load_settings()
            d["base_url"], d["model"] = d["base_url"] or s.qa_base_url, d["model"] or s.qa_model
        return {self.name: d}

    def _captioner(self) -> Any:
        from pipelines.video.caption import make_captioner

        lake = TASK_LAKE.get()
        if lake not in self._captioners:
            if self.config.captioner == "model":
                from pipelines.stages.qa import stage_client

                client = stage_client(self.name, self.config, lake)
                self._captioners[lake] = make_captioner("model", client=client, max_frames=self.config.max_frames,
                                                        max_tokens=self.config.max_tokens)
            else:
                self._captioners[lake] = make_captioner("measured")
        return self._captioners[lake]

    def _read_text(self, im: Any) -> list[str]:
        import numpy as np

        if self.config.ocr is None:
            return []
        if self._ocr is None:
            from pipelines.ocr.engines import make_engine

            self._ocr = make_engine(self.config.ocr)
            self._ocr.load()
        return [ln.text.strip() for ln in self._ocr(np.asarray(im.convert("RGB")))
                if ln.score >= self.config.ocr_min_score and ln.text.strip()]

    def map(self, sample: Sample) -> Sample:
        from PIL import Image

        from pipelines.video.caption import Segment
        from pipelines.video.measure import ShotMeasure
        from synth.qa.client import ChatError

        vi, m, _ = video_media(sample)
        vs = _shot_meta(sample)
        segs = []
        for s, seg_ann in zip(vs["shots"], vs["segments"], strict=True):
            frames = []
            text: list[str] = []
            for k in vs["keyframes"]:
                if k["shot"] == s["index"]:
                    im = Image.open(io.BytesIO(bytes(sample.blobs[sample.media[k["media"]].name]))).convert("RGB")
                    frames.append((k["t"], im))
                    text.extend(self._read_text(im))
            mj = next((x for x in vs["measures"] if x["shot"] == s["index"]), None)
            measure = None if mj is None else ShotMeasure(**{**mj, "colours": [tuple(c) for c in mj["colours"]]})
            segs.append((seg_ann, Segment(s["index"], s["t0"], s["t1"], s["boundary"], frames, measure, text)))
        cap = self._captioner()
        try:
            texts = cap.caption([seg for _, seg in segs])
        except ChatError as exc:
            raise Reject(exc.reason, str(exc)) from None
        lines = "\n".join(f"{{segment:{a}}} {t}" for (a, _), t in zip(segs, texts, strict=True))
        given = [p for p in sample.content if isinstance(p, TextPart) and p.text.strip()]
        content = (MediaPart(vi), *given, TextPart(lines))
        meta = dict(sample.meta)
        meta["caption"] = {**cap.describe(), "synthetic": cap.synthetic, "segments": len(texts),
                           "ocr": self.config.ocr}
        if cap.synthetic:
            meta["synthetic"] = True
            meta.setdefault("generator", f"video_caption:{cap.name}")
        return dataclasses.replace(sample, content=content, meta=meta)


@register
class DedupeVideo(DedupeImage):
    """Near-duplicate videos: the image dedupe (pHash within ``max_hamming`` and colour layout)
    on a 2x2 mosaic of four keyframes spread over the video (``video_shots`` first)."""

    name = "dedupe_video"

    def signature(self, sample: Sample) -> Any:
        import imagehash
        from PIL import Image

        from pipelines.stages.dedupe import colour_layout

        vs = sample.meta.get("video_shots") or {}
        keys = vs.get("keyframes") or []
        if not keys:
            return None
        pick = [keys[round(i * (len(keys) - 1) / 3)] for i in range(4)]
        tiles = [Image.open(io.BytesIO(bytes(sample.blobs[sample.media[k["media"]].name]))).convert("RGB")
                 .resize((128, 128)) for k in pick]
        mosaic = Image.new("RGB", (256, 256))
        for i, t in enumerate(tiles):
            mosaic.paste(t, ((i % 2) * 128, (i // 2) * 128))
        return int(str(imagehash.phash(mosaic)), 16), colour_layout(mosaic)
