"""Shot boundaries with PySceneDetect, forced cuts for long shots, keyframe times per shot.

Cuts come from PySceneDetect's detectors (``adaptive`` by default: a content score against
its rolling average, which keeps camera motion from cutting; ``content`` and ``histogram``
for comparison); fades through black from its ``ThresholdDetector`` (the cut is placed in the
dark frames). Frames are read through PySceneDetect's PyAV backend from the bytes in memory.
Shots longer than ``max_shot_s`` are cut into equal parts (as Panda-70M caps its clips); every
boundary says where it came from (``cut``, ``fade``, ``forced``).
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["ShotConfig", "Shot", "detect_shots", "keyframe_plan", "boundary_scores", "DETECTORS"]

DETECTORS = ("adaptive", "content", "histogram")


@dataclass(frozen=True)
class ShotConfig:
    detector: str = "adaptive"
    #: the detector's own threshold (None: PySceneDetect's default for that detector)
    threshold: float | None = None
    #: no two boundaries closer than this many frames (PySceneDetect's min_scene_len)
    min_shot_frames: int = 10
    #: also find fades through black (ThresholdDetector, mean brightness below ``fade_threshold``)
    fades: bool = True
    fade_threshold: float = 12.0
    #: cut shots longer than this into equal parts (None: no forced cuts)
    max_shot_s: float | None = None
    #: frames are shrunk to about this width for detection (None: PySceneDetect's automatic choice)
    detect_width: int | None = 256

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {list(DETECTORS)}, got {self.detector!r}")
        if self.min_shot_frames < 1:
            raise ValueError("min_shot_frames must be >= 1")
        if self.max_shot_s is not None and self.max_shot_s <= 0:
            raise ValueError("max_shot_s must be > 0 (or null: no forced cuts)")
        if self.detect_width is not None and self.detect_width < 16:
            raise ValueError("detect_width must be >= 16 (or null)")


@dataclass(frozen=True)
class Shot:
    index: int
    f0: int
    f1: int  # exclusive
    t0: float
    t1: float
    #: how this shot starts: ``start`` (the video's first frame), ``cut``, ``fade`` or ``forced``
    boundary: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _detector(cfg: ShotConfig) -> Any:
    import scenedetect as sd

    kw: dict[str, Any] = {"min_scene_len": cfg.min_shot_frames}
    if cfg.detector == "adaptive":
        if cfg.threshold is not None:
            kw["adaptive_threshold"] = cfg.threshold
        return sd.AdaptiveDetector(**kw)
    if cfg.threshold is not None:
        kw["threshold"] = cfg.threshold
    return sd.ContentDetector(**kw) if cfg.detector == "content" else sd.HistogramDetector(**kw)


def _boundaries(data: bytes, detectors: list[Any], cfg: ShotConfig) -> tuple[list[list[int]], int, float]:
    from scenedetect import SceneManager
    from scenedetect.backends.pyav import VideoStreamAv

    out = []
    n, fps = 0, 0.0
    for det in detectors:  # one pass per detector: each sees every frame, undisturbed by the others
        video = VideoStreamAv(io.BytesIO(data))  # no frame threading (see datalake.video._decoded)
        sm = SceneManager()
        if cfg.detect_width is not None:
            sm.auto_downscale = False
            sm.downscale = max(1, round(video.frame_size[0] / cfg.detect_width))
        sm.add_detector(det)
        sm.detect_scenes(video, show_progress=False)
        scenes = sm.get_scene_list(start_in_scene=True)
        out.append([s.frame_num for s, _ in scenes[1:]])
        n = max(n, video.frame_number)
        fps = float(video.frame_rate)
    return out, n, fps


def detect_shots(data: bytes, cfg: ShotConfig | None = None, frames: int | None = None,
                 fps: float | None = None) -> list[Shot]:
    """The shots of a video: every frame in exactly one shot, in order."""
    import scenedetect as sd

    cfg = cfg or ShotConfig()
    dets: list[Any] = [_detector(cfg)]
    if cfg.fades:
        dets.append(sd.ThresholdDetector(threshold=cfg.fade_threshold, min_scene_len=cfg.min_shot_frames,
                                         fade_bias=0.0, add_final_scene=False))
    found, n, rate = _boundaries(data, dets, cfg)
    n = frames or n
    rate = fps or rate
    marks: dict[int, str] = {f: "cut" for f in found[0]}
    for f in found[1] if cfg.fades else ():
        near = [g for g in marks if abs(g - f) < cfg.min_shot_frames]
        for g in near:  # the content detector also fires in a fade: the threshold detector places it
            del marks[g]
        marks[f] = "fade"
    cuts = sorted(f for f in marks if 0 < f < n)
    starts = [0, *cuts]
    ends = [*cuts, n]
    kinds = ["start", *(marks[f] for f in cuts)]
    shots: list[tuple[int, int, str]] = []
    for a, b, k in zip(starts, ends, kinds, strict=True):
        if cfg.max_shot_s is not None and rate and (b - a) / rate > cfg.max_shot_s:
            parts = math.ceil((b - a) / rate / cfg.max_shot_s)
            edges = [a + round(i * (b - a) / parts) for i in range(parts + 1)]
            shots.extend((edges[i], edges[i + 1], k if i == 0 else "forced") for i in range(parts))
        else:
            shots.append((a, b, k))
    return [Shot(i, a, b, round(a / rate, 6), round(b / rate, 6), k) for i, (a, b, k) in enumerate(shots) if b > a]


def keyframe_plan(shots: list[Shot], which: tuple[str, ...] = ("first", "middle")) -> list[tuple[int, int, str]]:
    """``(shot index, frame, role)`` of the keyframes to keep: the first frame of each shot
    (a scene-change frame) and/or its middle frame."""
    out = []
    for s in shots:
        for role in which:
            f = s.f0 if role == "first" else (s.f0 + s.f1 - 1) // 2 if role == "middle" else s.f1 - 1
            if not out or out[-1][1] != f:
                out.append((s.index, f, role))
    return out


def boundary_scores(found: list[int], truth: list[int], tolerance: int = 1) -> dict[str, float]:
    """Precision, recall and F1 of detected boundary frames against true ones (each true
    boundary matched at most once, within ``tolerance`` frames)."""
    left = sorted(truth)
    tp = 0
    for f in sorted(found):
        hit = next((t for t in left if abs(t - f) <= tolerance), None)
        if hit is not None:
            left.remove(hit)
            tp += 1
    p = tp / len(found) if found else 1.0
    r = tp / len(truth) if truth else 1.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0, "tp": tp,
            "found": len(found), "truth": len(truth)}
