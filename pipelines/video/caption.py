"""Dense captions: frames + timestamps of each segment -> one text per segment.

Two captioners behind one interface:

* ``measured`` (the default, offline): says only what was measured -- how the shot starts (cut,
  fade, forced cut), its dominant colours, whether and where things move and how fast, the
  text the OCR engine reads in its keyframes. Nothing is invented, so it is not synthetic.
* ``model``: a vision-language model behind any OpenAI-compatible endpoint, through the QA
  work's client (request cache in the lake, retries, rate limit), the segment's frames sent
  as images with their timestamps. Its text is marked synthetic (the loader's cap applies).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from pipelines.video.measure import ShotMeasure, direction_word

__all__ = ["Segment", "Captioner", "MeasuredCaptioner", "ModelCaptioner", "make_captioner", "CAPTIONERS"]

CAPTIONERS = ("measured", "model")


@dataclass
class Segment:
    index: int
    t0: float
    t1: float
    boundary: str  # start | cut | fade | forced
    frames: list[tuple[float, Any]] = field(default_factory=list)  # (t, PIL image) keyframes
    measure: ShotMeasure | None = None
    text: list[str] = field(default_factory=list)  # OCR lines read in the keyframes


class Captioner(ABC):
    name: str
    #: whether a model wrote the text (``meta.synthetic``)
    synthetic: bool = False

    @abstractmethod
    def caption(self, segments: list[Segment]) -> list[str]:
        """One text per segment, in order."""

    def describe(self) -> dict[str, Any]:
        return {"captioner": self.name}


_OPENING = {"start": "The video opens", "cut": "A cut", "fade": "After a fade through black, a new shot",
            "forced": "The shot continues"}


class MeasuredCaptioner(Captioner):
    """Sentences from measurements only."""

    name = "measured"

    def __init__(self, still_px_s: float = 8.0, pan_share: float = 0.5) -> None:
        self.still_px_s, self.pan_share = still_px_s, pan_share

    def caption(self, segments: list[Segment]) -> list[str]:
        return [self._one(s) for s in segments]

    def _one(self, s: Segment) -> str:
        parts = [f"{_OPENING.get(s.boundary, 'A shot')} ({s.t1 - s.t0:.1f} s)"]
        m = s.measure
        if m is not None and m.frames:
            if m.brightness < 20:
                parts.append("the picture is nearly black")
            cols = [c for c, share in m.colours if share >= 0.1][:3]
            if cols:
                parts.append("mostly " + (" and ".join(cols) if len(cols) < 3 else f"{cols[0]}, {cols[1]} and {cols[2]}"))
            if m.frames < 2:
                pass
            elif m.flow < self.still_px_s or m.moving < 0.002:
                parts.append("nothing moves")
            else:
                who = ("the whole picture pans" if m.moving >= self.pan_share else
                       f"something {m.mover_colour} moves" if m.mover_colour else "something moves")
                parts.append(f"{who} {direction_word(m.flow_dx, m.flow_dy)} at about {m.flow:.0f} px/s")
        if s.text:
            shown = [t for t in dict.fromkeys(s.text) if t.strip()][:4]
            if shown:
                parts.append("text on screen: " + ", ".join(f'"{t}"' for t in shown))
        return "; ".join(parts) + "."


class ModelCaptioner(Captioner):
    """A VLM behind an OpenAI-compatible endpoint (``synth.qa.client.ChatClient``)."""

    name = "model"
    synthetic = True
    PROMPT = ("These are frames of one shot of a video, from {t0:.2f}s to {t1:.2f}s, at the times given. Describe "
              "what happens in this shot in one or two sentences: what is visible, what moves and how. Say only "
              "what the frames show.")

    def __init__(self, client: Any, max_frames: int = 4, max_tokens: int = 120, temperature: float = 0.2) -> None:
        self.client, self.max_frames = client, max_frames
        self.params = {"max_tokens": max_tokens, "temperature": temperature}

    def describe(self) -> dict[str, Any]:
        return {"captioner": self.name, "model": getattr(self.client, "model", None), **self.params}

    def caption(self, segments: list[Segment]) -> list[str]:
        from datalake.video import encode_jpeg
        from synth.qa.client import image_part

        out = []
        for s in segments:
            frames = s.frames[: self.max_frames]
            content: list[dict[str, Any]] = [{"type": "text", "text": self.PROMPT.format(t0=s.t0, t1=s.t1)}]
            for t, im in frames:
                content.append({"type": "text", "text": f"t={t:.2f}s"})
                content.append(image_part(encode_jpeg(im, 85), "image/jpeg"))
            done = self.client.chat([{"role": "user", "content": content}], self.params)
            out.append(" ".join(done.text.split()))
        return out


def make_captioner(name: str, **kw: Any) -> Captioner:
    if name == "measured":
        return MeasuredCaptioner()
    if name == "model":
        return ModelCaptioner(**kw)
    raise ValueError(f"captioner must be one of {list(CAPTIONERS)}, got {name!r}")
