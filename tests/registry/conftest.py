"""Registry fixtures: a populated registry (lineage, boxes, users) and a real HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from datalake import Lake, LocalStore, write_version
from registry.service import Registry
from synth.shapes import shape_samples, write_caption_folder
from tests.conftest import free_port


@dataclass
class World:
    reg: Registry
    lake: Lake
    tokens: dict[str, str]
    raw: str
    tmp: Path


def populate(reg: Registry, tmp: Path) -> World:
    """raw@1 (ingest, with rejects) -> clean@1 (pipeline) -> mix@1 (with boxes, from clean@1 + shapes@1)."""
    from datalake.ingest import IngestConfig
    from registry.jobs import run_ingest

    lake = Lake(LocalStore(tmp / "lake"))
    raw_dir = tmp / "raw"
    write_caption_folder(raw_dir, 14, seed=2, broken=True)
    run_ingest(reg, lake, [str(raw_dir)], IngestConfig("raw"), progress=False)
    clean = write_version(lake, "clean", shape_samples(10, seed=3))
    r = reg.start_run("pipeline", "clean-captions", inputs=["raw@1"], spec={"stages": [{"decode": {}}]})
    reg.finish_run(r.id, "succeeded", counts={"inputs": 14, "kept": 10, "filtered": {"small": 3}, "duplicates": 1},
                   outputs=[clean])
    shapes = write_version(lake, "shapes", shape_samples(6, seed=4, size=(320, 240)))
    reg.register_version(shapes)
    mix = write_version(lake, "mix", shape_samples(16, seed=5, size=(320, 240)))
    r2 = reg.start_run("pipeline", "mix", inputs=["clean@1", "shapes@1"])
    reg.finish_run(r2.id, "succeeded", counts={"kept": 16}, outputs=[mix])
    reg.create_dataset("mix", kind="caption", owner="ana", description="Shapes <script>alert('x')</script> mixed",
                       tags=["synthetic", "boxes"])
    tokens = {role: reg.create_user(f"{role}-user", role) for role in ("reader", "writer", "admin")}
    return World(reg, lake, tokens, str(raw_dir), tmp)


@pytest.fixture
def world(registry_url: str, tmp_path: Path) -> Iterator[World]:
    reg = Registry(registry_url)
    yield populate(reg, tmp_path)
    reg.close()


@contextmanager
def serve(app: object) -> Iterator[str]:
    """Run an ASGI app under uvicorn on 127.0.0.1 in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
