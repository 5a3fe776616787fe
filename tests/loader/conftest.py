"""Loader fixtures: small real datasets (JPEG captions with boxes, conversations) in a local lake."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from datalake.sample import Annotation, Media, MediaPart, Message, Sample, Source, TextPart
from datalake.version import Lake, write_version
from synth.shapes import shape_samples


def jpeg(w: int, h: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=80)
    return buf.getvalue()


def chat_samples(n: int, with_image: bool = True) -> list[Sample]:
    out = []
    for i in range(n):
        media = (Media("0.jpg", "image/jpeg", 84, 56),) if with_image else ()
        user: tuple[Any, ...] = ((MediaPart(0),) if with_image else ()) + (TextPart(f"Where is the cat number {i}?"),)
        answer = "It is at {box:0}." if with_image else f"Nowhere, {i} times."
        out.append(Sample(
            key=f"c{i:04d}", kind="sft", source=Source(f"test://chat/{i}", "CC0-1.0"), media=media,
            messages=(Message("system", (TextPart("You are helpful."),)), Message("user", user),
                      Message("assistant", (TextPart(answer),))),
            annotations=(Annotation(0, "box", xyxy=(10.0, 8.0, 50.0, 40.0), label="cat"),) if with_image else (),
            blobs={"0.jpg": jpeg(84, 56, i)} if with_image else {}))
    return out


@pytest.fixture(scope="package")
def lake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loader-lake")


@pytest.fixture(scope="package")
def versions(lake_dir: Path) -> dict[str, str]:
    """Manifest URIs: ``shapes`` (240 captions with boxes, 6 shards), ``small`` (60 captions),
    ``chat`` (40 conversations with an image)."""
    lake = Lake.open(str(lake_dir))
    shapes = write_version(lake, "shapes", shape_samples(240, seed=3, size=(112, 84)), shard_samples=40)
    small = write_version(lake, "small", shape_samples(60, seed=4, size=(84, 56)), shard_samples=25)
    chat = write_version(lake, "chat", chat_samples(40), shard_samples=16)
    return {"shapes": shapes.uri, "small": small.uri, "chat": chat.uri}


def batch_digest(batch: dict[str, Any]) -> str:
    h = hashlib.sha256()
    for k in ("input_ids", "labels", "position_ids", "segment_ids", "cu_seqlens", "pixel_values", "image_grid_hw"):
        h.update(batch[k].numpy().tobytes())
    h.update(json.dumps(batch["sample_keys"]).encode())
    return h.hexdigest()[:16]


def take(it: Iterable[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    out = []
    for b in it:
        out.append(b)
        if len(out) == n:
            break
    return out
