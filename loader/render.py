"""One sample -> model inputs: decoded, augmented images as patches, and tokens with loss labels.

Images: decoded (JPEG through Pillow's DCT-domain ``draft`` when the pixel budget is below the
source size), augmented with the sample's own RNG ``(seed, dataset, key, epoch)``, resized to
the native-resolution budget (sides multiples of patch x merge = 28) and cut into 14x14 patches
in row-major order (``uint8``, ``[n, 14*14*3]``; normalise on the device). Each image becomes
``<|media_start|>`` + one ``<|media_pad|>`` per merged 2x2 patch + ``<|media_end|>``.

Text: placeholders ``{box:i}``, ``{point:i}``, ``{polygon:i}`` are rendered *after*
augmentation, from the moved geometry, as normalised 0-1000 integers (``coords="norm1000"``)
or pixels of the augmented image (``coords="pixels"``); an annotation pushed out of the image
renders as ``(out of view)``, never a dangling number. A horizontal flip swaps left/right words.
Flips are off for kinds where mirrored text would be wrong (OCR, GUI agents, knowledge pages),
for images in which the OCR stage found text (``meta.ocr``: a photo of a street sign stays
readable) and for samples with several images (one text cannot describe two flips).

Videos: a video referenced by the content becomes frames sampled uniformly over its duration at
``video_fps`` (at most ``video_max_frames``, each within ``video_max_pixels``), each frame
preceded by its timestamp as text (``<1.5s>``, no loss) and fed as an image; ``{segment:i}``
renders as the span's timestamps (``1.20s-2.80s``). Frames are not augmented (one clip, one
geometry); the choice of frames is a pure function of the duration and the settings.

Loss: for ``sft`` and ``agent`` samples only on assistant turns and their ``<|im_end|>``; for
pre-training kinds on every text token and the closing ``<|endoftext|>``; never on media tokens
or ChatML headers.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from datalake.sample import PLACEHOLDER_RE, MediaPart, Sample, TextPart
from loader.augment import augment_with_params, budget_size, resolve_policy, swap_left_right
from loader.tokenizer import TextTokenizer

__all__ = ["Processed", "SkipSample", "SampleProcessor", "NO_FLIP_KINDS", "ASSISTANT_LOSS_KINDS"]

PATCH = 14
MERGE = 2
NO_FLIP_KINDS = frozenset({"ocr", "agent", "knowledge"})
ASSISTANT_LOSS_KINDS = frozenset({"sft", "agent"})
IGNORE = -100


class SkipSample(Exception):
    """This sample cannot be used (the reason is counted; the run goes on)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Processed:
    """A sample ready to pack: tokens, labels, image patches and grids."""

    key: str
    ids: np.ndarray
    labels: np.ndarray
    patches: list[np.ndarray] = field(default_factory=list)
    grids: list[tuple[int, int]] = field(default_factory=list)
    truncated: bool = False
    params: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _coord(x: float, y: float, w: int, h: int, coords: str) -> tuple[int, int]:
    if coords == "pixels":
        return round(x), round(y)
    return min(1000, max(0, round(x / w * 1000))), min(1000, max(0, round(y / h * 1000)))


def _fmt_xy(x: float, y: float, w: int, h: int, coords: str) -> str:
    cx, cy = _coord(x, y, w, h, coords)
    return f"({cx},{cy})"


def render_placeholders(text: str, anns: list[dict[str, Any] | None], sizes: dict[int, tuple[int, int]],
                        coords: str = "norm1000") -> str:
    """Replace ``{box:i}`` & co by the coordinates of (augmented) annotation ``i``; ``{action:i}``
    by the action in the one syntax of :mod:`datalake.actions` (``click(x=512, y=300)``). An
    action whose point left the image cannot be rendered: the sample is skipped, counted."""

    def sub(m: Any) -> str:
        idx = int(m.group(2))
        a = anns[idx] if idx < len(anns) else None
        if m.group(1) == "action":
            return _action(a, idx)
        if m.group(1) == "segment" and a is not None:
            return f"{a['t0']:.2f}s-{a['t1']:.2f}s"
        if a is None:
            return "(out of view)"
        w, h = sizes.get(a["media"], (1, 1))
        if a["type"] == "box":
            x1, y1, x2, y2 = a["xyxy"]
            return _fmt_xy(x1, y1, w, h, coords) + "," + _fmt_xy(x2, y2, w, h, coords)
        if a["type"] == "point":
            return _fmt_xy(*a["xy"], w, h, coords)
        return ",".join(_fmt_xy(x, y, w, h, coords) for x, y in a["points"])

    def _action(a: dict[str, Any] | None, idx: int) -> str:
        from datalake.actions import format_action

        attrs = (a or {}).get("attrs") or {}
        end = anns[attrs["to"]] if a is not None and isinstance(attrs.get("to"), int) else None
        if a is None or ("to" in attrs and end is None):
            raise SkipSample("action out of view", f"annotation {idx}'s point left the augmented image")
        w, h = sizes.get(a["media"], (1, 1))
        pts = [_coord(*a["xy"], w, h, coords)] + ([_coord(*end["xy"], w, h, coords)] if end is not None else [])
        return format_action(a["action"], [(str(x), str(y)) for x, y in pts], attrs.get("args"))

    return PLACEHOLDER_RE.sub(sub, text)


def patchify(img: np.ndarray, patch: int = PATCH) -> tuple[np.ndarray, tuple[int, int]]:
    """HxWx3 (sides multiples of ``patch``) -> ``[gh*gw, patch*patch*3]`` row-major, and (gh, gw)."""
    h, w, c = img.shape
    gh, gw = h // patch, w // patch
    p = img[: gh * patch, : gw * patch].reshape(gh, patch, gw, patch, c).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(p.reshape(gh * gw, patch * patch * c)), (gh, gw)


class SampleProcessor:
    """Turns a ``Sample`` into a ``Processed`` item; pure given (sample, epoch)."""

    def __init__(self, tokenizer: TextTokenizer, *, seed: int, policy: str | dict[str, Any] | None,
                 seq_len: int, max_pixels: int | None = None, coords: str = "norm1000",
                 overlong: str = "truncate", video_fps: float = 1.0, video_max_frames: int = 16,
                 video_max_pixels: int | None = None) -> None:
        if coords not in ("norm1000", "pixels"):
            raise ValueError(f"coords must be 'norm1000' or 'pixels', got {coords!r}")
        if overlong not in ("truncate", "skip"):
            raise ValueError(f"overlong must be 'truncate' or 'skip', got {overlong!r}")
        self.tok, self.seed, self.seq_len = tokenizer, int(seed), int(seq_len)
        self.policy = resolve_policy(policy)
        if max_pixels is not None:
            self.policy["max_pixels"] = int(max_pixels)
        self.coords, self.overlong = coords, overlong
        if video_fps <= 0 or video_max_frames < 1:
            raise ValueError("video_fps must be > 0 and video_max_frames >= 1")
        self.video_fps, self.video_max_frames = float(video_fps), int(video_max_frames)
        self.video_max_pixels = int(video_max_pixels or self.policy["max_pixels"])

    # -- videos -------------------------------------------------------------------------------
    def frame_times(self, duration_s: float) -> list[float]:
        """Where frames are taken: ``n = min(max_frames, max(1, floor(duration * fps)))`` times,
        each in the middle of one of ``n`` equal spans of the video."""
        n = min(self.video_max_frames, max(1, int(duration_s * self.video_fps)))
        return [round((k + 0.5) * duration_s / n, 6) for k in range(n)]

    def _video(self, sample: Sample, i: int) -> list[tuple[float, np.ndarray]]:
        from datalake.video import VideoError, frames_at

        m = sample.media[i]
        data = sample.blobs.get(m.name)
        if data is None:
            raise SkipSample("missing media", f"no bytes for {m.name}")
        if not m.duration_s:
            raise SkipSample("unsupported media", f"{m.name}: a video without its duration (ingest probes it)")
        try:
            got = frames_at(bytes(data), self.frame_times(float(m.duration_s)), time_limit_s=60.0)
        except VideoError as exc:
            raise SkipSample("undecodable video", f"{m.name}: {exc}") from None
        if not got:
            raise SkipSample("undecodable video", f"{m.name}: no frame decodes")
        out = []
        for t, im in got:
            tw, th = budget_size(im.width, im.height, self.video_max_pixels, self.policy["patch"])
            out.append((t, np.asarray(im.convert("RGB").resize((tw, th), Image.BICUBIC))))
        return out

    # -- images -------------------------------------------------------------------------------
    def _image(self, sample: Sample, i: int, anns: list[dict[str, Any]], seed: Any, allow_flip: bool
               ) -> tuple[np.ndarray, list[dict[str, Any] | None], dict[str, Any]]:
        m = sample.media[i]
        if not m.mime.startswith("image/"):
            raise SkipSample("unsupported media", f"{m.name} is {m.mime}; the loader feeds images")
        data = sample.blobs.get(m.name)
        if data is None:
            raise SkipSample("missing media", f"no bytes for {m.name}")
        p = dict(self.policy)
        if not allow_flip:
            p["hflip_p"] = 0.0
        try:
            im = Image.open(io.BytesIO(data))
            w0, h0 = im.size
            tw, th = budget_size(w0, h0, p["max_pixels"], p["patch"])
            scale_hint = p.get("crop_min_scale", 1.0) if p.get("crop_p", 0.0) > 0 else 1.0
            if im.format == "JPEG":
                im.draft("RGB", (int(tw / scale_hint), int(th / scale_hint)))
            im = im.convert("RGB")
        except Exception as exc:  # noqa: BLE001 - any decoder failure is this sample's problem
            raise SkipSample("undecodable image", f"{m.name}: {exc}") from None
        w, h = im.size
        if (w, h) != (w0, h0):  # draft decoded at a reduced scale: move annotations with it
            sx, sy = w / w0, h / h0
            anns = [_scale_ann(a, sx, sy) for a in anns]
        return augment_with_params(im, anns, p, seed)  # type: ignore[arg-type]

    def process(self, sample: Sample, *, dataset: str, epoch: int) -> Processed:
        rec_anns = [a for a in sample.to_json().get("annotations", [])]
        n_images = len(sample.media)
        allow_flip = sample.kind not in NO_FLIP_KINDS and n_images == 1 and not _has_text(sample, 0)
        out_anns: list[dict[str, Any] | None] = list(rec_anns)
        sizes: dict[int, tuple[int, int]] = {}
        patches, grids, params = [], [], []
        flipped = False
        # a sample with a video: only the media its content shows are fed (not its keyframes or
        # clips), in the order they are shown; each video as its frames with their timestamps
        videos = {i for i, m in enumerate(sample.media) if m.mime.startswith("video/")}
        shown = {p.media for p in (*sample.content, *(q for msg in sample.messages for q in msg.content))
                 if isinstance(p, MediaPart)}
        per_media: dict[int, list[tuple[float | None, np.ndarray, tuple[int, int]]]] = {}
        if videos:
            allow_flip = False
        for i in range(n_images):
            if videos and i not in shown:
                continue
            if i in videos:
                frames = self._video(sample, i)
                per_media[i] = [(t, *patchify(img)) for t, img in frames]
                sizes[i] = (frames[0][1].shape[1], frames[0][1].shape[0])
                params.append({"video": [t for t, _ in frames]})
                continue
            idx = [j for j, a in enumerate(rec_anns) if a["media"] == i and a["type"] in ("box", "point", "polygon")]
            img, anns, prm = self._image(sample, i, [rec_anns[j] for j in idx],
                                         (self.seed, dataset, sample.key, int(epoch), i), allow_flip)
            for j, a in zip(idx, anns, strict=True):
                out_anns[j] = a
            pch, grid = patchify(img)
            if videos:
                per_media[i] = [(None, pch, grid)]
            else:
                patches.append(pch)
                grids.append(grid)
            sizes[i] = (img.shape[1], img.shape[0])
            flipped = flipped or bool(prm.get("hflip"))
            params.append(prm)

        def text_ids(text: str) -> list[int]:
            text = render_placeholders(text, out_anns, sizes, self.coords)
            return self.tok.encode(swap_left_right(text, self.policy.get("lr_swap", "spatial")) if flipped else text)

        ids: list[int] = []
        labels: list[int] = []
        media_spans: list[tuple[int, int]] = []

        def add(tokens: list[int], loss: bool) -> None:
            ids.extend(tokens)
            labels.extend(tokens if loss else [IGNORE] * len(tokens))

        def media_tokens(grid: tuple[int, int]) -> None:
            gh, gw = grid
            n = (gh // MERGE) * (gw // MERGE) if gh % MERGE == 0 and gw % MERGE == 0 else gh * gw
            start = len(ids)
            add([self.tok.media_start] + [self.tok.media_pad] * n + [self.tok.media_end], False)
            media_spans.append((start, len(ids)))

        def add_media(i: int) -> None:
            if not videos:
                media_tokens(grids[i])
                return
            for t, pch, grid in per_media[i]:  # patches in the order the tokens show them
                if t is not None:
                    add(self.tok.encode(f"<{t:.1f}s>"), False)
                patches.append(pch)
                grids.append(grid)
                media_tokens(grid)

        if sample.messages:
            assistant_only = sample.kind in ASSISTANT_LOSS_KINDS
            for msg in sample.messages:
                loss = msg.role == "assistant" or not assistant_only
                add([self.tok.im_start] + self.tok.encode(f"{msg.role}\n"), False)
                for part in msg.content:
                    if isinstance(part, MediaPart):
                        add_media(part.media)
                    else:
                        add(text_ids(part.text), loss)
                add([self.tok.im_end], loss)
                add(self.tok.encode("\n"), False)
        else:
            for k, part in enumerate(sample.content):
                if isinstance(part, MediaPart):
                    add_media(part.media)
                elif isinstance(part, TextPart):
                    sep = "\n" if k + 1 < len(sample.content) and isinstance(sample.content[k + 1], TextPart) else ""
                    add(text_ids(part.text + sep), True)
            add([self.tok.eot], True)
        truncated = False
        if len(ids) > self.seq_len:
            if self.overlong == "skip":
                raise SkipSample("overlong", f"{len(ids)} tokens > seq_len {self.seq_len}")
            cut = self.seq_len
            keep_images = len(media_spans)
            for n, (a, b) in enumerate(media_spans):
                if a < cut < b:  # never cut inside an image: drop it and everything after
                    cut, keep_images = a, n
                    break
                if a >= cut:
                    keep_images = n
                    break
            if cut == 0:
                raise SkipSample("overlong", f"its first image alone needs more than seq_len {self.seq_len} tokens")
            ids, labels = ids[:cut], labels[:cut]
            patches, grids = patches[:keep_images], grids[:keep_images]
            truncated = True
        return Processed(key=f"{dataset}/{sample.key}", ids=np.asarray(ids, dtype=np.int32),
                         labels=np.asarray(labels, dtype=np.int32), patches=patches, grids=grids,
                         truncated=truncated, params=params)


def _has_text(sample: Sample, i: int) -> bool:
    """Whether the OCR stage found text in image ``i`` (``meta.ocr[<media name>]``): a flip would
    turn it into mirror writing."""
    if i >= len(sample.media):
        return False
    page = (sample.meta.get("ocr") or {}).get(sample.media[i].name) if isinstance(sample.meta.get("ocr"), dict) else None
    if not isinstance(page, dict):
        return False
    return bool(page.get("lines") or str(page.get("text") or "").strip() or page.get("text_area_ratio", 0) > 0)


def _scale_ann(a: dict[str, Any], sx: float, sy: float) -> dict[str, Any]:
    a = dict(a)
    if a["type"] == "box":
        x1, y1, x2, y2 = a["xyxy"]
        a["xyxy"] = [x1 * sx, y1 * sy, x2 * sx, y2 * sy]
    elif a["type"] == "point":
        a["xy"] = [a["xy"][0] * sx, a["xy"][1] * sy]
    elif a["type"] == "polygon":
        a["points"] = [[x * sx, y * sy] for x, y in a["points"]]
    return a
