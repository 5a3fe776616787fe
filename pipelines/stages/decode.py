"""``decode``: every image decodes within a pixel limit; EXIF orientation recorded.

Pixels stay original (annotations are in original-pixel coordinates); the orientation a
viewer would apply is written to ``meta.exif_orientation`` and the displayed size to
``meta.display_size`` so later stages can normalise if they want to. Videos are probed with
PyAV (``datalake.video.probe_video``: container, codec, duration, fps, frames counted and
decoded, size, rotation, audio) into ``meta.video``; a broken one is a reject with its reason.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Any

from datalake.media import MediaError, probe_image
from datalake.sample import Sample
from pipelines.stage import MapStage, Reject, register


@register
class Decode(MapStage):
    name = "decode"

    @dataclass(frozen=True)
    class Config:
        max_pixels: int = 100_000_000

        def __post_init__(self) -> None:
            if self.max_pixels < 1:
                raise ValueError("max_pixels must be >= 1")

    def map(self, sample: Sample) -> Sample:
        meta: dict[str, Any] = dict(sample.meta)
        for m in sample.media:
            data = sample.blobs.get(m.name)
            if data is None:
                raise Reject("missing_media", f"no bytes for {m.name}")
            if m.mime.startswith("image/"):
                try:
                    info = probe_image(bytes(data), max_pixels=self.config.max_pixels)
                except MediaError as exc:
                    raise Reject(exc.reason, f"{m.name}: {exc.detail}") from None
                if (info.width, info.height) != (m.width, m.height):
                    raise Reject("size_mismatch", f"{m.name} is {info.width}x{info.height}, record says "
                                                  f"{m.width}x{m.height}")
                orientation = _exif_orientation(bytes(data))
                if orientation not in (None, 1):
                    meta.setdefault("exif_orientation", {})[m.name] = orientation
                    if orientation in (5, 6, 7, 8):
                        meta.setdefault("display_size", {})[m.name] = [m.height, m.width]
            elif m.mime.startswith("video/"):
                meta.setdefault("video", {})[m.name] = _probe_video(bytes(data), m.name)
        return dataclasses.replace(sample, meta=meta)


def _exif_orientation(data: bytes) -> int | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - no or broken EXIF: no orientation
        return None


def _probe_video(data: bytes, name: str) -> dict[str, Any]:
    from datalake.video import VideoError, probe_video

    try:
        return probe_video(data).to_json()
    except VideoError as exc:
        raise Reject(exc.reason, f"{name}: {exc.detail}") from None
