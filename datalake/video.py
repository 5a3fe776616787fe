"""Videos in original bytes: probe, decode frames at times, keyframes, stream-copy clips (PyAV).

PyAV bundles FFmpeg, so everything here runs without system FFmpeg. A video is never
re-encoded unless a caller asks for it (:func:`cut_clip` with ``reencode=True``): the lake keeps
the original file, shots are timestamps on it, and a clip file, when wanted, is a stream copy
that starts at a keyframe.

Every failure is a :class:`VideoError` with a reason from :data:`VIDEO_REJECT_REASONS`; every
call takes a ``time_limit_s`` so one pathological file never stalls a worker (checked between
packets and frames: FFmpeg's own calls are short on local bytes).
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from typing import Any

__all__ = ["VideoInfo", "VideoError", "VIDEO_REJECT_REASONS", "VIDEO_EXTS", "VIDEO_MIME", "probe_video",
           "iter_frames", "frames_at", "sample_frames", "keyframe_times", "cut_clip", "encode_jpeg"]

#: every reason a video can be rejected for
VIDEO_REJECT_REASONS = ("empty_file", "video_unsupported", "undecodable_video", "truncated_video", "no_video_stream",
                        "zero_length_video", "video_timeout")
VIDEO_MIME = {"mp4": "video/mp4", "m4v": "video/mp4", "mov": "video/quicktime", "mkv": "video/x-matroska",
              "webm": "video/webm", "avi": "video/x-msvideo", "mpg": "video/mpeg", "mpeg": "video/mpeg",
              "ogv": "video/ogg", "ts": "video/mp2t"}
VIDEO_EXTS = tuple(VIDEO_MIME)


class VideoError(Exception):
    """A video that cannot be used: ``reason`` is one of :data:`VIDEO_REJECT_REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` measured (``frames`` counted from the packets, not the header)."""

    container: str
    codec: str
    duration_s: float
    fps: float
    frames: int
    width: int
    height: int
    rotation: int
    has_audio: bool
    bit_rate: int | None
    keyframes: int
    pix_fmt: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as a player shows it (rotation of 90/270 swaps the sides)."""
        return (self.height, self.width) if self.rotation % 180 == 90 else (self.width, self.height)


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise VideoError("video_unsupported", "install PyAV (pip install av) to read videos") from None
    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own stderr chatter: our errors say what happened
    return av


def _open(data: bytes) -> Any:
    av = _av()
    if not data:
        raise VideoError("empty_file", "0 bytes")
    try:
        c = av.open(io.BytesIO(data), mode="r")
    except Exception as exc:  # noqa: BLE001 - any container error is a bad video
        if "moov atom not found" in str(exc):  # an MP4 whose index (written last) never arrived
            raise VideoError("truncated_video", "MP4 without its index (moov atom): the file was cut short") from None
        raise VideoError("undecodable_video", f"not a readable container ({exc})") from None
    if not c.streams.video:
        c.close()
        raise VideoError("no_video_stream", f"{c.format.name} container without a video stream")
    return c


class _Deadline:
    def __init__(self, limit_s: float | None, what: str) -> None:
        self.end = None if limit_s is None else time.monotonic() + float(limit_s)
        self.limit, self.what = limit_s, what

    def check(self) -> None:
        if self.end is not None and time.monotonic() > self.end:
            raise VideoError("video_timeout", f"{self.what} took longer than {self.limit:g} s")


def probe_video(data: bytes, time_limit_s: float | None = 30.0, decode_check: bool = True) -> VideoInfo:
    """Container, codec, duration, fps, frame count, size, rotation, audio: checked, not trusted.

    Frames are counted from the demuxed packets; the last packets are decoded (``decode_check``)
    so a file cut short in the middle of a frame is ``truncated_video``, not a clip that stops
    early without a word."""
    dl = _Deadline(time_limit_s, "probing")
    c = _open(data)
    try:
        s = c.streams.video[0]
        tb = s.time_base
        frames = keys = 0
        last_pts: int | None = None
        first_pts: int | None = None
        max_dur = 0
        corrupt = 0
        for p in c.demux(s):
            dl.check()
            if not p.size:
                continue
            frames += 1
            keys += bool(p.is_keyframe)
            corrupt += bool(getattr(p, "is_corrupt", False))
            if p.pts is not None:
                first_pts = p.pts if first_pts is None else min(first_pts, p.pts)
                if last_pts is None or p.pts >= last_pts:
                    last_pts, max_dur = p.pts, max(int(p.duration or 0), 0)
        if frames == 0:
            raise VideoError("zero_length_video", "the video stream holds no frames")
        rate = s.average_rate or s.guessed_rate or s.base_rate
        fps = float(rate) if rate else 0.0
        if s.duration and tb is not None:
            duration = float(s.duration * tb)
        elif last_pts is not None and tb is not None:
            duration = float((last_pts - (first_pts or 0) + max_dur) * tb)
        else:
            duration = (c.duration or 0) / 1e6
        if not math.isfinite(duration) or duration <= 0:
            duration = frames / fps if fps else 0.0
        rotation, decoded = 0, 0
        if decode_check:
            rotation, decoded = _decode_check(data, frames, dl)
        listed = int(s.frames or 0)  # the container's own count (MP4/MKV index), when it has one
        if listed > frames + 1:
            raise VideoError("truncated_video", f"{frames} of the {listed} frames its index lists are in the file")
        if corrupt or (decode_check and decoded < frames * 0.98 - 1):
            raise VideoError("truncated_video", f"{decoded} of {frames} frames decode"
                             + (f", {corrupt} corrupt packets" if corrupt else ""))
        cc = s.codec_context
        return VideoInfo(container=c.format.name, codec=cc.name, duration_s=round(duration, 6), fps=round(fps, 6),
                         frames=frames, width=int(cc.width), height=int(cc.height), rotation=rotation,
                         has_audio=bool(c.streams.audio), bit_rate=int(c.bit_rate) if c.bit_rate else None,
                         keyframes=keys, pix_fmt=cc.format.name if cc.format is not None else None)
    except VideoError:
        raise
    except Exception as exc:  # noqa: BLE001 - a demuxer error mid-file is a broken video
        raise VideoError("undecodable_video", str(exc)) from None
    finally:
        c.close()


def _decode_check(data: bytes, frames: int, dl: _Deadline) -> tuple[int, int]:
    """Decode every frame (cheapest reliable truncation check); return (rotation, frames decoded)."""
    c = _open(data)
    rotation, n = 0, 0
    try:
        s = c.streams.video[0]
        for f in c.decode(s):
            if n == 0:
                rotation = int(getattr(f, "rotation", 0) or 0) % 360
            n += 1
            dl.check()
    except VideoError:
        raise
    except Exception:  # noqa: BLE001, S110 - decoding stopped: the count says how far it got
        pass
    finally:
        c.close()
    return rotation, n


def _decoded(data: bytes, time_limit_s: float | None, what: str = "decoding") -> Iterator[tuple[float, Any]]:
    """Every decoded frame as ``(t_seconds, av.VideoFrame)``; nothing converted yet."""
    dl = _Deadline(time_limit_s, what)
    c = _open(data)
    try:
        s = c.streams.video[0]
        # FFmpeg's default (slice) threading: frame threading deadlocks in avcodec_free_context
        # when a decoder is closed mid-stream (a caller that stops after the first frame)
        start = float(s.start_time * s.time_base) if s.start_time is not None and s.time_base else 0.0
        for f in c.decode(s):
            dl.check()
            if f.pts is not None:
                yield round(float(f.pts * f.time_base) - start, 6), f
    except VideoError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise VideoError("undecodable_video", str(exc)) from None
    finally:
        c.close()


def _image(f: Any, max_side: int | None) -> Any:
    """A frame as an RGB PIL image, scaled by FFmpeg (swscale) when it is larger than ``max_side``."""
    w, h = f.width, f.height
    if max_side and max(w, h) > max_side:
        k = max_side / max(w, h)
        return f.to_image(width=max(2, round(w * k)), height=max(2, round(h * k)))
    return f.to_image()


def iter_frames(data: bytes, step_s: float | None = None, time_limit_s: float | None = 60.0,
                max_side: int | None = None) -> Iterator[tuple[float, Any]]:
    """Decoded frames as ``(t_seconds, PIL.Image RGB)``; ``step_s`` keeps one frame per step
    (the first frame at or after each multiple of it); ``max_side`` shrinks large frames."""
    nxt = 0.0
    for t, f in _decoded(data, time_limit_s):
        if step_s is not None:
            if t + 1e-6 < nxt:
                continue
            nxt = (math.floor(t / step_s + 1e-6) + 1) * step_s
        yield t, _image(f, max_side)


def frames_at(data: bytes, times: list[float], time_limit_s: float | None = 60.0,
              max_side: int | None = None) -> list[tuple[float, Any]]:
    """The frame shown at each time (the last frame with pts <= t), in one decoding pass."""
    return sample_frames(data, times, max_side, None, None, time_limit_s)[0]


def sample_frames(data: bytes, times: list[float], times_side: int | None, step_s: float | None,
                  step_side: int | None, time_limit_s: float | None = 60.0
                  ) -> tuple[list[tuple[float, Any]], list[tuple[float, Any]]]:
    """One decoding pass for two needs: the frames shown at ``times`` (at ``times_side``) and one
    frame per ``step_s`` (at ``step_side``); only those frames are converted to images."""
    want = sorted(set(times))
    found: dict[float, tuple[float, Any]] = {}
    stepped: list[tuple[float, Any]] = []
    prev: tuple[float, Any] | None = None
    i, nxt = 0, 0.0
    for t, f in _decoded(data, time_limit_s):
        while i < len(want) and want[i] < t - 1e-6:  # the frame before this one was shown at want[i]
            pt, pf = prev if prev is not None else (t, f)
            found[want[i]] = (pt, _image(pf, times_side))
            i += 1
        if step_s is not None and t + 1e-6 >= nxt:
            stepped.append((t, _image(f, step_side)))
            nxt = (math.floor(t / step_s + 1e-6) + 1) * step_s
        prev = (t, f)
        if i >= len(want) and step_s is None:
            break
    while i < len(want) and prev is not None:
        found[want[i]] = (prev[0], _image(prev[1], times_side))
        i += 1
    return [found[t] for t in times if t in found], stepped


def keyframe_times(data: bytes) -> list[float]:
    """Presentation times (s) of the video stream's keyframes: where a stream copy can start."""
    c = _open(data)
    try:
        s = c.streams.video[0]
        start = s.start_time or 0
        return sorted(round(float((p.pts - start) * s.time_base), 6) for p in c.demux(s)
                      if p.size and p.is_keyframe and p.pts is not None)
    finally:
        c.close()


def cut_clip(data: bytes, t0: float, t1: float, reencode: bool = False) -> tuple[bytes, float, float]:
    """A clip covering ``[t0, t1)`` as an MP4, and its real ``(start, end)`` in the source.

    By stream copy (the default: no quality loss, no decode): whole groups of pictures, from
    the last keyframe at or before ``t0`` up to the first keyframe at or after ``t1`` (or the
    end), so the clip decodes on its own and its first frame is the source's frame at ``start``.
    Re-encoded (H.264) from exactly ``t0`` to ``t1`` when ``reencode`` is asked for."""
    av = _av()
    if t1 <= t0:
        raise ValueError(f"clip end {t1} must be after its start {t0}")
    if reencode:
        return _reencode(data, t0, t1), t0, t1
    keys = keyframe_times(data)
    start = max([k for k in keys if k <= t0 + 1e-6] or [0.0])
    end = min([k for k in keys if k >= t1 - 1e-6] or [math.inf])
    src = _open(data)
    buf = io.BytesIO()
    try:
        s = src.streams.video[0]
        out = av.open(buf, mode="w", format="mp4")
        o = out.add_stream_from_template(s)
        origin = s.start_time or 0
        shift: int | None = None
        last = start
        for p in src.demux(s):  # decode order: a GOP's packets follow its keyframe
            if p.pts is None or not p.size:
                continue
            t = float((p.pts - origin) * s.time_base)
            if p.is_keyframe and t >= end - 1e-6:
                break
            if shift is None:
                if not (p.is_keyframe and abs(t - start) < 1e-6):
                    continue
                shift = p.dts if p.dts is not None else p.pts
            last = max(last, t + float((p.duration or 0) * s.time_base))
            p.pts -= shift
            if p.dts is not None:
                p.dts -= shift
            p.stream = o
            out.mux(p)
        out.close()
    finally:
        src.close()
    return buf.getvalue(), start, round(min(end, last), 6)


def _reencode(data: bytes, t0: float, t1: float) -> bytes:
    av = _av()
    c = _open(data)
    rate = c.streams.video[0].average_rate or Fraction(25, 1)
    c.close()
    buf = io.BytesIO()
    out = av.open(buf, mode="w", format="mp4")
    st: Any = None
    n = 0
    for t, im in iter_frames(data):
        if t + 1e-6 < t0:
            continue
        if t >= t1 - 1e-6:
            break
        if st is None:
            st = out.add_stream("h264", rate=rate)
            st.width, st.height = im.width - im.width % 2, im.height - im.height % 2
            st.pix_fmt = "yuv420p"
        frame = av.VideoFrame.from_image(im.crop((0, 0, st.width, st.height)))
        frame.pts = n
        for p in st.encode(frame):
            out.mux(p)
        n += 1
    if st is not None:
        for p in st.encode():
            out.mux(p)
    out.close()
    return buf.getvalue()


def encode_jpeg(im: Any, quality: int = 90) -> bytes:
    b = io.BytesIO()
    im.convert("RGB").save(b, "JPEG", quality=quality)
    return b.getvalue()
