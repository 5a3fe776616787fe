"""The training run's datasets, made by the project's own ingest, pipeline and generators.

``python -m training.prepare --lake DIR`` writes (and records in the registry, with lineage):

- ``train-captions``: an img2dataset folder of captioned shape images ingested and cleaned by
  ``pipelines/specs/clean-captions.yaml`` (decode, image/text filters, exact + near dedupe);
- ``train-shapes``: grounded captions with boxes (``{box:i}`` placeholders rendered by the loader
  after augmentation), ingested from a WebDataset tar;
- ``train-ocr``: rendered text pages with exact line/word polygons (``mmlake synth text``);
- ``train-knowledge``: geometry, charts and tables with computed QA (``mmlake synth``);
- ``heldout-shapes``: grounded captions of another seed, never trained on (the vision check).

Sizes are chosen so that the whole lake travels to a GPU machine in a few tens of MB; the
training configs name these datasets as ``NAME@latest`` under ``data.lake``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

__all__ = ["prepare", "main"]


def prepare(lake: Any, client: Any, work: Path, *, captions: int = 600, shapes: int = 600, ocr: int = 120,
            knowledge: int = 240, heldout: int = 100, size: tuple[int, int] = (336, 252), seed: int = 0
            ) -> dict[str, str]:
    import pipelines
    from datalake.ingest import IngestConfig
    from pipelines.run import run_pipeline
    from pipelines.spec import load_spec
    from registry.jobs import run_ingest
    from synth.run import run_synth
    from synth.shapes import write_caption_folder, write_shapes_tar

    out: dict[str, str] = {}
    raw = work / "raw"
    if raw.exists():
        shutil.rmtree(raw)
    write_caption_folder(raw / "captions", captions, seed=seed, size=size)
    run_ingest(client, lake, [str(raw / "captions")], IngestConfig(dataset="train-captions-raw", workers=2))
    spec = load_spec(Path(pipelines.__file__).parent / "specs" / "clean-captions.yaml")
    spec = dataclasses.replace(spec, inputs=("train-captions-raw@latest",), output="train-captions")
    out["train-captions"] = run_pipeline(spec, lake, client, progress=None)["output"]
    tar = write_shapes_tar(raw / "shapes.tar", shapes, seed=seed + 1, size=size)
    run, _ = run_ingest(client, lake, [str(tar)], IngestConfig(dataset="train-shapes", workers=2))
    out["train-shapes"] = run.outputs[0]
    out["train-ocr"] = run_synth(client, lake, ["text"], "train-ocr", ocr, seed=seed, progress=False).to_json()["output"]
    out["train-knowledge"] = run_synth(client, lake, ["geometry", "chart", "table"], "train-knowledge", knowledge,
                                       seed=seed, progress=False).to_json()["output"]
    tar = write_shapes_tar(raw / "heldout.tar", heldout, seed=seed + 1000, size=size)
    run, _ = run_ingest(client, lake, [str(tar)], IngestConfig(dataset="heldout-shapes", workers=2))
    out["heldout-shapes"] = run.outputs[0]
    shutil.rmtree(raw)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.prepare", description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", required=True, help="lake root to write (a path)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every dataset's size")
    ap.add_argument("--size", default="336x252", help="WxH of the shape images (default 336x252)")
    args = ap.parse_args(argv)
    from mmlake.settings import load_settings

    settings = load_settings().with_lake(args.lake)
    lake = settings.open_lake()
    client = settings.registry_client()
    s = args.scale
    w, h = (int(v) for v in args.size.lower().split("x"))
    out = prepare(lake, client, Path(args.lake).parent / "prepare-work", captions=int(600 * s),
                  shapes=int(600 * s), ocr=int(120 * s), knowledge=int(240 * s), heldout=int(100 * s), size=(w, h))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
