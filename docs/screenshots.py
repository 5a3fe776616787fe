"""Re-make the README's screenshots of the web registry (real pages, real data).

    .venv/bin/python docs/screenshots.py

Runs the demo into a temp home (a caption corpus with rejects, annotated shapes, a derived
version with lineage), serves the registry on 127.0.0.1 and photographs it with Playwright
driving Debian's Chromium. Writes docs/images/*.png.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def main() -> None:
    import importlib.util

    from playwright.sync_api import sync_playwright

    from registry.api import ApiSettings, create_app
    from registry.service import Registry

    spec = importlib.util.spec_from_file_location("regfix", ROOT / "tests/registry/conftest.py")
    regfix = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["regfix"] = regfix
    spec.loader.exec_module(regfix)  # type: ignore[union-attr]
    tmp = Path(tempfile.mkdtemp(prefix="mmlake-shots-"))
    reg = Registry(f"sqlite:///{tmp / 'registry.db'}")
    world = regfix.populate(reg, tmp)
    # a long-document version (two PDFs, OCRed) for the document statistics
    from datalake import write_version
    from datalake.pdf import pdf_sample
    from pipelines.ocr import OcrStage
    from tests.pdfs import born_digital_pdf, scanned_pdf

    born_digital_pdf(tmp / "manual.pdf")
    scanned_pdf(tmp / "scan.pdf")
    stage = OcrStage(OcrStage.Config(engine="rapidocr", words=False))
    stage.setup()
    docs = [stage.map(pdf_sample(n, (tmp / f"{n}.pdf").read_bytes(), source=f"file://{n}.pdf")) for n in ("manual", "scan")]
    reg.register_version(write_version(world.lake, "documents", docs))
    # GUI agent data: a grounding screen and a form-filling trajectory, collected in Chromium
    from synth.gui.browser import Browser
    from synth.gui.collect import PageSource, grounding, split_counts
    from synth.gui.trajectories import plan_task, trajectories

    src = PageSource(platforms=("desktop",))
    form = next(i for i in range(40) if (t := plan_task(src, 3, i)[3]) is not None and t.kind == "form")
    with Browser() as br:
        gui = (split_counts(grounding(src, 3, [0], tmp=tmp, browser=br))[0]
               + split_counts(trajectories(src, 3, [form], tmp=tmp, browser=br))[0])
    reg.register_version(write_version(world.lake, "gui", gui))
    out = ROOT / "docs" / "images"
    out.mkdir(parents=True, exist_ok=True)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"]
    with regfix.serve(create_app(reg, ApiSettings(lake_uri=world.lake.uri))) as url, sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        page = b.new_page(viewport={"width": 1280, "height": 860})
        for name, path, full in (("datasets", "/datasets", False), ("version-page", "/datasets/mix/1", True),
                                 ("sample", "/datasets/mix/1/samples/2", False), ("raw-version", "/datasets/raw/1", False),
                                 ("documents-page", "/datasets/documents/1", True)):
            page.goto(url + path)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out / f"{name}.png"), full_page=full)
            print(f"wrote {out / f'{name}.png'}")
        page.goto(url + "/datasets/gui/1/samples/1")  # a trajectory: its first steps
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(out / "agent-trajectory.png"), full_page=True, clip={"x": 0, "y": 0, "width": 1280, "height": 1500})
        print(f"wrote {out / 'agent-trajectory.png'}")
        b.close()
    os.environ.pop("MMLAKE_HOME", None)


if __name__ == "__main__":
    main()
