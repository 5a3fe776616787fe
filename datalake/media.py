"""Probing media bytes: what format they really are, their size, and whether they decode.

Used wherever bytes enter the lake. The format comes from the bytes, not the file name (a PNG
saved as ``.jpg`` is stored as ``0.png`` with ``meta.ext_mismatch``). The pixel limit is
checked from the header, before any decode, so a decompression bomb (a tiny PNG declaring
50k x 50k pixels) costs nothing. JPEGs are decoded with ``Image.draft`` at 1/8 scale, which
still reads the whole entropy-coded stream -- a truncated file fails -- at a fraction of the
cost of a full decode.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass

__all__ = ["MediaError", "ImageInfo", "probe_image", "IMAGE_EXTS", "mime_for_ext"]

# Pillow format -> (mime, canonical extension)
_FORMATS = {
    "JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "GIF": ("image/gif", "gif"),
    "WEBP": ("image/webp", "webp"), "BMP": ("image/bmp", "bmp"), "TIFF": ("image/tiff", "tiff"),
}
IMAGE_EXTS = {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "gif": "GIF", "webp": "WEBP", "bmp": "BMP",
              "tif": "TIFF", "tiff": "TIFF"}


def mime_for_ext(ext: str) -> str | None:
    fmt = IMAGE_EXTS.get(ext.lower())
    return _FORMATS[fmt][0] if fmt else None


class MediaError(ValueError):
    """Bytes that cannot enter the lake; ``reason`` is a short machine-readable name."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


@dataclass(frozen=True)
class ImageInfo:
    format: str
    mime: str
    ext: str
    width: int
    height: int


_BOMB_LOCK = threading.Lock()


def probe_image(data: bytes, *, max_pixels: int = 100_000_000, decode: bool = True) -> ImageInfo:
    """Identify and check an image. Raises ``MediaError`` with reason ``empty_file``,
    ``not_an_image``, ``unsupported_format``, ``too_many_pixels``, ``truncated_image`` or
    ``undecodable_image``."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise MediaError("empty_file", "0 bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(io.BytesIO(data))
            except Image.DecompressionBombError:
                if max_pixels <= 2 * (Image.MAX_IMAGE_PIXELS or 0):
                    raise
                # the user's limit is above Pillow's own (2 x 89.5 Mpx): open the header with
                # Pillow's check off; the size is checked against max_pixels just below
                with _BOMB_LOCK:
                    old, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                    try:
                        im = Image.open(io.BytesIO(data))
                    finally:
                        Image.MAX_IMAGE_PIXELS = old
    except Image.DecompressionBombError as exc:
        raise MediaError("too_many_pixels", str(exc)) from None
    except UnidentifiedImageError:
        head = data[:512].lstrip().lower()
        if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
            raise MediaError("unsupported_format", "SVG is a vector format: rasterise it first "
                                                   "(e.g. rsvg-convert -w 1024 in.svg > out.png)") from None
        raise MediaError("not_an_image", f"{len(data)} bytes in no image format Pillow knows "
                                         f"(starts {data[:8].hex()})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on garbage headers
        reason = "truncated_image" if "truncated" in str(exc).lower() else "undecodable_image"
        raise MediaError(reason, f"{type(exc).__name__}: {exc}") from None
    if im.format not in _FORMATS:
        raise MediaError("unsupported_format", f"{im.format} is not one of {sorted(_FORMATS)}")
    w, h = im.size
    if w <= 0 or h <= 0:
        raise MediaError("undecodable_image", f"declares size {w}x{h}")
    if w * h > max_pixels:
        raise MediaError("too_many_pixels", f"{w}x{h} = {w * h} pixels > limit {max_pixels}")
    if decode:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                if im.format == "JPEG":
                    im.draft("RGB", (max(1, w // 8), max(1, h // 8)))
                im.load()
        except OSError as exc:
            reason = "truncated_image" if "truncated" in str(exc).lower() else "undecodable_image"
            raise MediaError(reason, str(exc)) from None
        except Exception as exc:  # noqa: BLE001
            raise MediaError("undecodable_image", f"{type(exc).__name__}: {exc}") from None
    mime, ext = _FORMATS[im.format]
    return ImageInfo(im.format, mime, ext, w, h)
