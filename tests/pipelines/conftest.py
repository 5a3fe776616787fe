"""Pipeline fixtures: a raw corpus with near-duplicates and broken files; engines started once."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synth.shapes import render_shapes, write_caption_folder


def make_corpus(root: Path, n: int = 150, seed: int = 7) -> dict[str, int]:
    """``n`` captioned images + near-duplicates (re-encoded, resized, exact copies, caption
    edits) + the broken inputs of ``write_caption_folder`` + a PNG saved as .jpg. Returns
    the number of inputs."""
    write_caption_folder(root, n, seed=seed, size=(256, 192), broken=True)
    d = root / "dups"
    d.mkdir()
    rng = np.random.default_rng(seed)
    made = 0
    for i in rng.choice(n, 30, replace=False):
        src = root / "00000" / f"{i:09d}"
        img = Image.open(src.with_suffix(".jpg"))
        cap = src.with_suffix(".txt").read_text()
        kind = made % 3
        buf = io.BytesIO()
        if kind == 0:
            img.save(buf, "JPEG", quality=45)  # re-encoded
        elif kind == 1:
            img.resize((192, 144)).save(buf, "JPEG", quality=85)  # resized
        else:
            buf.write(src.with_suffix(".jpg").read_bytes())  # exact copy
        (d / f"dup{made:03d}.jpg").write_bytes(buf.getvalue())
        (d / f"dup{made:03d}.txt").write_text(cap.replace("An image of", "A picture of"))
        made += 1
    im = render_shapes(seed, 10_001, (256, 192))
    png = io.BytesIO()
    Image.open(io.BytesIO(im.jpeg)).save(png, "PNG")
    (d / "disguised.jpg").write_bytes(png.getvalue())  # PNG bytes, .jpg name: kept, noted
    (d / "disguised.txt").write_text("a png pretending to be a jpeg file")
    (d / "tiny.jpg").write_bytes(render_shapes(seed, 10_002, (40, 30)).jpeg)
    (d / "tiny.txt").write_text("a very small picture of shapes")
    (d / "short.jpg").write_bytes(render_shapes(seed, 10_003, (256, 192)).jpeg)
    (d / "short.txt").write_text("shapes")
    return n + made + 3 + 6


SPEC = {
    "name": "clean", "output": "clean", "partition_size": 40,
    "stages": [{"decode": {"max_pixels": 50_000_000}}, {"image_filter": {"min_side": 64, "max_aspect": 4.0}},
               {"text_filter": {"min_words": 3}}, {"dedupe_exact": {}}, {"dedupe_image": {"max_hamming": 6}},
               {"dedupe_text": {"threshold": 0.8}}],
}


def write_spec(path: Path, **over: object) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({**SPEC, **over}))
    return path


@pytest.fixture(scope="module")
def ray_runner() -> Iterator[object]:
    import ray

    from pipelines.runners.ray_runner import RayRunner

    runner = RayRunner(num_cpus=2, object_store_memory=200 * 1024 * 1024)
    yield runner
    ray.shutdown()


@pytest.fixture(scope="module")
def spark_runner() -> Iterator[object]:
    from pipelines.runners.spark_runner import SparkRunner

    runner = SparkRunner(master="local[2]")
    yield runner
    runner.spark.stop()


def summary_of(out: dict) -> str:
    return json.dumps({k: out[k] for k in ("output", "kept", "filtered", "duplicates", "rejected", "samples_in")})
