"""The web registry in a real browser: Playwright driving Debian's Chromium against the server
on 127.0.0.1. Screenshots land in test-artifacts/."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from registry.api import ApiSettings, create_app

from .conftest import World, serve

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    assert Path("/usr/bin/chromium").exists(), "Debian's chromium is missing: run `make test` (it installs it)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def site(world: World) -> Iterator[tuple[str, World]]:
    app = create_app(world.reg, ApiSettings(lake_uri=world.lake.uri))
    with serve(app) as url:
        yield url, world
        app.state.jobs.wait()


def shot(page, name: str, request: pytest.FixtureRequest) -> None:  # type: ignore[no-untyped-def]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-{request.node.callspec.id}.png"), full_page=True)


def test_browse_charts_samples_with_boxes_and_lineage(browser, site, request) -> None:  # type: ignore[no-untyped-def]
    url, world = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{url}/datasets")
    assert page.locator("#datasets tbody tr").count() == 4
    page.fill("input[name=q]", "mixed")
    page.click("#filters button")
    assert [r.get_attribute("data-dataset") for r in page.locator("#datasets tbody tr").all()] == ["mix"]
    page.select_option("select[name=tag]", "boxes")
    page.fill("input[name=q]", "")
    page.click("#filters button")
    assert page.locator("#datasets tbody tr").count() == 1
    shot(page, "datasets", request)

    page.click("text=mix")
    page.wait_for_url(f"{url}/datasets/mix")
    assert "<script>alert('x')</script>" in page.locator("#description").inner_text()  # shown as text ...
    assert dialogs == []  # ... never run

    page.click("#versions a:text('@1')")
    page.wait_for_url(f"{url}/datasets/mix/1")
    # statistics charts
    assert page.locator("#chart-kinds rect.bar").first.get_attribute("data-value") == "16"
    widths = [float(b.get_attribute("data-value")) for b in page.locator("#chart-width rect.bar").all()]
    assert sum(widths) == 16
    # a sample with its boxes drawn where they are in the picture
    v = world.lake.open_version("mix")
    first = v.get(0)
    card = page.locator(".sample").first
    assert card.get_attribute("data-key") == first.key
    img = card.locator(".viewer img")
    img.evaluate("i => i.decode()")
    boxes = card.locator("svg.overlay rect.ann-box")
    assert boxes.count() == len(first.annotations) > 0
    ib = img.bounding_box()
    scale = ib["width"] / first.media[0].width
    for k, ann in enumerate(first.annotations):
        bb = boxes.nth(k).bounding_box()
        x0, y0, x1, y1 = ann.xyxy  # type: ignore[misc]
        assert abs(bb["x"] - (ib["x"] + x0 * scale)) < 2 and abs(bb["y"] - (ib["y"] + y0 * scale)) < 2
        assert abs(bb["width"] - (x1 - x0) * scale) < 3 and abs(bb["height"] - (y1 - y0) * scale) < 3
    assert "{box:0}" in card.locator(".ph").first.inner_text()
    shot(page, "version", request)

    # follow lineage edges upstream: mix@1 <- run mix <- clean@1 <- run clean-captions <- raw@1
    page.click('#lineage a[data-node="v:clean@1"]')
    page.wait_for_url(f"{url}/datasets/clean/1")
    assert page.locator("#made-by").inner_text() == "clean-captions"
    page.click('#lineage a[data-node="v:raw@1"]')
    page.wait_for_url(f"{url}/datasets/raw/1")
    funnel = {b.get_attribute("data-label"): b.get_attribute("data-value") for b in page.locator("#chart-funnel rect.bar").all()}
    assert funnel["inputs"] == "20" and funnel["kept"] == "14" and funnel["rejected: truncated_image"] == "1"
    page.click("text=ingest raw")
    assert page.locator("#run-status").inner_text() == "succeeded"
    # one sample page with its annotation table
    page.goto(f"{url}/datasets/mix/1/samples/2")
    assert page.locator("#annotations tbody tr").count() == len(v.get(2).annotations)
    shot(page, "sample", request)
    page.close()


def test_login_submit_job_and_change_lifecycle(browser, site, request) -> None:  # type: ignore[no-untyped-def]
    url, world = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # anonymous: the form is visible, submitting it is refused with a message
    page.goto(f"{url}/jobs/new")
    page.fill("textarea[name=source]", world.raw)
    page.fill("input[name=dataset]", "from-browser")
    with page.expect_navigation() as nav:
        page.click("#job-form button")
    assert nav.value.status == 401 and "needs a writer token" in page.locator("#error").inner_text()
    # a bad token is refused, a writer token works
    page.goto(f"{url}/login")
    page.fill("input[name=token]", "mml_wrong")
    page.click("form button")
    assert "not valid" in page.content()
    page.fill("input[name=token]", world.tokens["writer"])
    page.click("form button")
    page.wait_for_url(f"{url}/datasets")
    assert "writer-user (writer)" in page.locator("header .who").inner_text()
    page.goto(f"{url}/jobs/new")
    page.fill("textarea[name=source]", world.raw)
    page.fill("input[name=dataset]", "from-browser")
    page.click("#job-form button")
    page.wait_for_url(f"{url}/runs/*")
    page.wait_for_function("document.querySelector('#run-status').innerText === 'succeeded'", timeout=60_000)
    page.click("#run-outputs a")
    page.wait_for_url(f"{url}/datasets/from-browser/1")
    assert page.locator(".sample").count() == 12  # first page of 14 samples
    shot(page, "job-output", request)
    # a pipeline job through the same YAML as `mmlake run`
    page.goto(f"{url}/jobs/new")
    page.fill("#pipeline-form textarea", "name: web-clean\ninput: mix@1\noutput: mix-clean\nstages:\n"
                                         "  - text_filter: {min_words: 3}\n  - dedupe_exact: {}\n")
    page.click("#pipeline-form button")
    page.wait_for_url(f"{url}/runs/*")
    page.wait_for_function("document.querySelector('#run-status').innerText === 'succeeded'", timeout=60_000)
    assert page.locator("#run-outputs a").inner_text() == "mix-clean@1"
    assert world.reg.get_run(page.url.rsplit("/", 1)[1]).inputs == ["mix@1"]
    page.goto(f"{url}/datasets/from-browser/1")
    # lifecycle needs an admin
    assert page.locator("#lifecycle").count() == 0
    page.goto(f"{url}/logout")
    page.goto(f"{url}/login")
    page.fill("input[name=token]", world.tokens["admin"])
    page.click("form button")
    page.goto(f"{url}/datasets/from-browser/1")
    page.select_option("#lifecycle select", "deprecated")
    page.click("#lifecycle button")
    page.wait_for_url(f"{url}/datasets/from-browser/1?msg=*")
    assert page.locator("#version-state").inner_text() == "deprecated"
    assert world.reg.get_version("from-browser@1").state == "deprecated"
    page.close()


def test_document_statistics_are_charted(browser, site, request) -> None:  # type: ignore[no-untyped-def]
    """A long-document version (PDFs, OCRed): pages per document, tokens per page and OCR
    confidence are charted on its page; the OCR lines are drawn on the page images."""
    from datalake import write_version
    from datalake.pdf import pdf_sample
    from pipelines.ocr import OcrStage
    from tests.pdfs import born_digital_pdf, scanned_pdf

    url, world = site
    born_digital_pdf(world.tmp / "manual.pdf")
    scanned_pdf(world.tmp / "scan.pdf")
    stage = OcrStage(OcrStage.Config(engine="rapidocr", words=False))
    stage.setup()
    docs = [stage.map(pdf_sample(name, (world.tmp / f"{name}.pdf").read_bytes(), source=f"file://{name}.pdf"))
            for name in ("manual", "scan")]
    world.reg.register_version(write_version(world.lake, "documents", docs))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/datasets/documents/1")

    def bars(chart: str) -> dict[str, float]:
        return {b.get_attribute("data-label"): float(b.get_attribute("data-value"))
                for b in page.locator(f"#{chart} rect.bar").all()}

    assert bars("chart-pages") == {"1": 1.0, "2": 1.0}  # one 1-page scan, one 2-page manual
    assert sum(bars("chart-page-tokens").values()) == 3
    conf = bars("chart-ocr-confidence")
    assert sum(conf.values()) == 3 and sum(v for k, v in conf.items() if k.startswith(("0.9", "≥0.99"))) >= 2
    assert "2 documents" in page.locator("#chart-pages").get_attribute("aria-label")
    card = page.locator(".sample").first
    assert card.locator("svg.overlay polygon.ann-polygon").count() > 0
    shot(page, "documents", request)
    page.close()


@pytest.mark.parametrize("registry_url", ["sqlite"], indirect=True)
def test_agent_samples_show_elements_targets_and_trajectory_steps(browser, site, request, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """GUI agent data collected in Chromium (synth.gui): the grounding screen with its element
    boxes and click points where they are in the screenshot; a trajectory step by step, each
    screenshot with its action's point, the actions written out in screenshot pixels."""
    from datalake import write_version
    from synth.gui.browser import Browser
    from synth.gui.collect import PageSource, grounding, split_counts
    from synth.gui.trajectories import plan_task, trajectories

    url, world = site
    src = PageSource(platforms=("desktop",))
    form = next(i for i in range(40) if (t := plan_task(src, 3, i)[3]) is not None and t.kind == "form")

    def collect() -> tuple[list[Any], list[Any]]:  # in a thread: this one already runs a Playwright driver
        with Browser() as br:
            return (split_counts(grounding(src, 3, [0], tmp=tmp_path, browser=br))[0],
                    split_counts(trajectories(src, 3, [form], tmp=tmp_path, browser=br))[0])

    with ThreadPoolExecutor(1) as pool:
        ground, traj = pool.submit(collect).result()
    assert len(ground) == 1 and len(traj) == 1
    world.reg.register_version(write_version(world.lake, "gui", ground + traj))
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    g = ground[0]
    page.goto(f"{url}/datasets/gui/1/samples/0")
    card = page.locator(".sample").first
    img = card.locator(".viewer img").first
    img.evaluate("i => i.decode()")
    ib = img.bounding_box()
    scale = ib["width"] / g.media[0].width
    boxes, points = card.locator("svg.overlay rect.ann-box"), card.locator("svg.overlay circle.ann-point")
    assert boxes.count() == sum(a.type == "box" for a in g.annotations) > 5
    assert points.count() == sum(a.type == "point" for a in g.annotations) > 0
    for k, a in enumerate(a for a in g.annotations if a.type == "point"):  # each click point on its spot
        bb = points.nth(k).bounding_box()
        assert abs(bb["x"] + bb["width"] / 2 - (ib["x"] + a.xy[0] * scale)) < 2  # type: ignore[index]
        assert abs(bb["y"] + bb["height"] / 2 - (ib["y"] + a.xy[1] * scale)) < 2  # type: ignore[index]
    shot(page, "agent-grounding", request)

    t = traj[0]
    page.goto(f"{url}/datasets/gui/1/samples/1")
    card = page.locator(".sample").first
    steps = card.locator(".viewer")
    assert steps.count() == len(t.media) == len(t.meta["trajectory"]["steps"]) >= 3  # one screenshot per step
    acts = card.locator(".ph-action")
    pointed = [s for s in t.meta["trajectory"]["steps"] if s["annotation"] is not None]
    assert acts.count() == len(pointed)
    for k, s in enumerate(pointed):  # the action, in pixels, and its point drawn on that step's screen
        a = t.annotations[s["annotation"]]
        assert acts.nth(k).inner_text().startswith(f"{s['action']}(x={a.xy[0]:.0f}, y={a.xy[1]:.0f}")  # type: ignore[index]
        assert steps.nth(a.media).locator(f'circle.ann-point[data-ann="{s["annotation"]}"]').count() == 1
    assert "Thought" in card.inner_text() or "I see" in card.inner_text()
    shot(page, "agent-trajectory", request)
    page.close()


def test_version_page_charts_the_parts_removed_from_kept_documents(browser, site) -> None:  # type: ignore[no-untyped-def]
    """HTML pages through the html-documents pipeline: the text nodes and images its filters took
    out of the documents they kept are a chart of the version, by reason."""
    import yaml

    from pipelines.run import run_pipeline
    from pipelines.spec import parse_spec
    from tests.datalake.test_html import TRAPS, png

    url, world = site
    pages = world.tmp / "pages"
    (pages / "img").mkdir(parents=True)
    (pages / "img" / "a.png").write_bytes(png(300, 200, (200, 0, 0)))
    (pages / "img" / "lazy.png").write_bytes(png(320, 240, (0, 150, 0)))
    (pages / "img" / "pixel.gif").write_bytes(png(1, 1, (255, 255, 255)))
    (pages / "traps.html").write_text(TRAPS.replace("../pages/img/", "img/"))
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "pipelines/specs/html-documents.yaml").read_text())
    out = run_pipeline(parse_spec({**spec, "input": str(pages), "runner_options": {"workers": 1}}), world.lake,
                       world.reg, progress=False)
    stats = world.reg.get_version(out["output"]).stats
    page = browser.new_page()
    page.goto(f"{url}/datasets/html-documents/{out['output'].split('@')[1]}")
    bars = {b.get_attribute("data-label"): b.get_attribute("data-value")
            for b in page.locator("#chart-parts-dropped rect.bar").all()}
    assert bars and {k: float(v) for k, v in bars.items()} == {k: float(v) for k, v in stats["parts_dropped"].items()}
    assert float(bars["image: too_small"]) >= 1 and float(bars["node: node_too_few_words"]) >= 5
    page.close()


def test_video_samples_play_with_shots_on_a_timeline_keyframes_and_charts(browser, site, request) -> None:  # type: ignore[no-untyped-def]
    """Real and synthetic videos through the video-shots pipeline: the sample page plays the
    original file, its shots are on a timeline, its keyframes below it; a click on a keyframe or a
    shot seeks the video there; the version page charts durations, shots, fps and resolutions."""
    import shutil

    import yaml

    from pipelines.run import run_pipeline
    from pipelines.spec import parse_spec
    from synth.video import render_video
    from tests.realdata import video_paths

    url, world = site
    src = world.tmp / "videos"
    src.mkdir()
    shutil.copy(video_paths()["bikes.mp4"], src / "bikes.mp4")
    v = render_video(4, 0)
    (src / f"{v.key}.mp4").write_bytes(v.data)
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "pipelines/specs/video-shots.yaml").read_text())
    out = run_pipeline(parse_spec({**spec, "input": str(src), "runner_options": {"workers": 1}}), world.lake,
                       world.reg, progress=False)
    number = out["output"].split("@")[1]
    version = world.reg.open_version(out["output"])
    keys = [s.key for s in version]
    bikes = next(s for s in version if s.key == "bikes")
    shots = bikes.meta["video_shots"]["shots"]
    page = browser.new_page()
    page.goto(f"{url}/datasets/video-shots/{number}")
    durations = [float(b.get_attribute("data-value")) for b in page.locator("#chart-video-duration rect.bar").all()]
    assert sum(durations) == 2 == version.manifest.stats["videos"]
    assert page.locator("#chart-video-shots rect.bar").count() >= 1
    res = {b.get_attribute("data-label") for b in page.locator("#chart-video-resolution rect.bar").all()}
    assert res == {"640x272", "320x240"}
    page.goto(f"{url}/datasets/video-shots/{number}/samples/{keys.index('bikes')}")
    video = page.locator("#sample video")
    page.wait_for_function("document.querySelector('#sample video').readyState >= 1", timeout=15000)
    assert abs(float(video.evaluate("v => v.duration")) - 10.0) < 0.1  # the browser decodes the original file
    assert page.locator("#sample .timeline rect.seg-shot").count() == len(shots) == 6
    kfs = page.locator("#keyframes figure.keyframe")
    assert kfs.count() == len(bikes.meta["video_shots"]["keyframes"]) == 12
    kfs.nth(2).click()  # the first frame of the second shot
    t = float(page.evaluate("document.querySelector('#sample video').dataset.seeked"))
    assert abs(t - shots[1]["t0"]) < 0.05
    page.locator("#sample .timeline rect.seg-shot").nth(4).click()
    assert abs(float(page.evaluate("document.querySelector('#sample video').currentTime")) - shots[4]["t0"]) < 0.05
    segs = page.locator("#sample .ph-segment")
    assert segs.count() == 6 and segs.nth(1).inner_text() == f"{shots[1]['t0']:.2f}s–{shots[1]['t1']:.2f}s"
    shot(page, "video-sample", request) if hasattr(request.node, "callspec") else page.screenshot(
        path=str(ARTIFACTS / "video-sample.png"), full_page=True)
    page.close()


def test_api_docs_render_offline_from_local_assets(browser, site) -> None:  # type: ignore[no-untyped-def]
    """/docs is Swagger UI served by the registry itself: with every other host unreachable the
    page still lists every route (FastAPI's default fetched it from a CDN: a blank page)."""
    url, _world = site
    page = browser.new_page()
    foreign: list[str] = []
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(url) else (foreign.append(r.request.url),
                                                                                      r.abort()))
    import httpx

    ops = sum(len(v) for v in httpx.get(f"{url}/openapi.json").json()["paths"].values())
    page.goto(f"{url}/docs")
    page.wait_for_function(f"document.querySelectorAll('.opblock').length >= {ops}", timeout=20000)
    assert ops >= 25 and foreign == []  # every operation of the API is listed
    page.close()


@pytest.mark.parametrize("registry_url", ["sqlite"], indirect=True)
def test_two_versions_are_compared_on_a_page(browser, site, request) -> None:  # type: ignore[no-untyped-def]
    """The dataset page's compare form opens the diff of two versions; its numbers equal what the
    test computes from the samples it wrote."""
    import dataclasses

    from datalake import write_version
    from synth.shapes import shape_samples

    url, world = site
    first = shape_samples(10, seed=4)
    later = shape_samples(13, seed=4)[2:]  # s00000, s00001 removed; s00010-12 added
    other = {s.key: s for s in shape_samples(13, seed=9, size=(200, 150))}
    later = [other[s.key] if s.key in ("s00004", "s00007") else s for s in later]  # the same key, another image
    later = [dataclasses.replace(s, meta={**s.meta, "split": "b"}) if s.key == "s00005" else s for s in later]
    world.reg.register_version(write_version(world.lake, "cmp", first))
    world.reg.register_version(write_version(world.lake, "cmp", later))
    keys_a, keys_b = {s.key for s in first}, {s.key for s in later}
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/datasets/cmp")
    page.select_option("#compare select[name=a]", "1")
    page.select_option("#compare select[name=b]", "2")
    page.click("#compare button")
    page.wait_for_url("**/compare/cmp?a=1&b=2")
    text = lambda sel: page.locator(sel).inner_text().strip()  # noqa: E731
    assert (text("#diff-samples-a"), text("#diff-samples-b")) == (str(len(keys_a)), str(len(keys_b)))
    assert text("#diff-added") == str(len(keys_b - keys_a)) == "3"
    assert text("#diff-removed") == str(len(keys_a - keys_b)) == "2"
    # the two re-rendered images are changed; a meta edit of the same size may or may not be (the
    # index holds sizes, not hashes): at least the two, at most the three
    assert text("#diff-changed") in ("2", "3")
    assert int(text("#diff-changed")) + int(text("#diff-unchanged")) == len(keys_a & keys_b)
    assert set(text("#diff-examples-removed").split(", ")) == keys_a - keys_b
    row = page.locator("#diff-kinds tr[data-key=caption]")
    assert (row.locator(".a").inner_text(), row.locator(".b").inner_text()) == (str(len(keys_a)), str(len(keys_b)))
    width = page.locator("#diff-distributions tr[data-key=width]")
    assert width.locator(".a-count").inner_text() == str(len(keys_a))
    shot(page, "compare", request)
    api = page.request.get(f"{url}/api/v1/diff?a=cmp@1&b=cmp@2").json()
    assert api["keys"]["added"] == 3 and api["keys"]["removed"] == 2
    page.close()


def test_rejects_browser_filters_shows_thumbnails_and_readmits(browser, site, request) -> None:  # type: ignore[no-untyped-def]
    from pipelines.run import run_pipeline
    from pipelines.spec import parse_spec

    url, world = site
    out = run_pipeline(parse_spec({"name": "strict", "input": "raw@1", "output": "strict", "runner": "local",
                                   "stages": [{"decode": {}}, {"text_filter": {"min_words": 11}},
                                              {"dedupe_image": {"max_hamming": 6}}]}), world.lake, world.reg, progress=False)
    v1 = world.reg.open_version("strict@1")
    rows = v1.read_rejects().to_pylist()
    filtered = [r for r in rows if r["reason"] == "too_few_words"]
    assert len(filtered) >= 3, rows
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    # the run page's per-stage table: each stage's in - out is its rows in the rejects table
    page.goto(f"{url}/runs/{out['run_id']}")
    n = out["samples_in"]
    for stage in ("decode", "text_filter", "dedupe_image"):
        tr = page.locator(f'#run-stages tr[data-stage="{stage}"]')
        got_in, got_out = int(tr.locator(".in").inner_text()), int(tr.locator(".out").inner_text())
        assert (got_in, got_out) == (n, n - sum(r["stage"] == stage for r in rows)), stage
        n = got_out
    assert n == len(v1)
    page.goto(f"{url}/datasets/strict/1")
    page.click("#rejects-link")
    page.wait_for_url(f"{url}/datasets/strict/1/rejects")
    assert page.locator("#rejects tbody tr").count() == len(rows)
    assert page.locator("input[name=key]").count() == 0  # anonymous: nothing to re-admit with
    thumbs = page.locator("#rejects img.thumb")
    assert thumbs.count() == len(rows)
    for k in range(thumbs.count()):  # every thumbnail decoded, in the same fixed box
        t = thumbs.nth(k)
        assert t.evaluate("i => i.decode().then(() => i.naturalWidth)") > 0
        bb = t.bounding_box()
        assert (round(bb["width"]), round(bb["height"])) == (96, 96)
    page.click('.facet[data-reason="too_few_words"]')
    assert {c.inner_text() for c in page.locator("#rejects tbody td:nth-child(7)").all()} == {"too_few_words"}
    shot(page, "rejects", request)
    # a writer re-admits two of them: a new version with those samples, its rejects two fewer
    page.context.add_cookies([{"name": "mmlake_token", "value": world.tokens["writer"], "url": url}])
    page.reload()
    picked = [r["key"] for r in filtered[:2]]
    for key in picked:
        page.check(f'input[name=key][value="{key}"]')
    page.click("#readmit")
    page.wait_for_url(f"{url}/datasets/strict/2*")
    assert "re-admitted 2 sample(s) from strict@1" in page.content()
    v2 = world.reg.open_version("strict@2")
    assert len(v2) == len(v1) + 2 and set(picked) <= {s.key for s in v2}
    assert len(v2.read_rejects()) == len(rows) - 2
    run = world.reg.get_run(world.reg.get_version("strict@2").created_by_run)
    assert run.inputs == ["raw@1", "strict@1"] and run.counts["readmitted"] == 2
    assert world.reg.audit(action="version.readmit")[0]["actor"] == "writer-user"
    page.close()


def test_job_run_page_shows_its_log_duration_and_retries(browser, site, request) -> None:  # type: ignore[no-untyped-def]
    url, world = site
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.context.add_cookies([{"name": "mmlake_token", "value": world.tokens["writer"], "url": url}])
    page.goto(f"{url}/jobs/new")
    page.fill("textarea[name=source]", world.raw)
    page.fill("input[name=dataset]", "logged")
    page.click("#job-form button")
    page.wait_for_url(f"{url}/runs/*")
    page.wait_for_function("document.querySelector('#job-state').innerText.startsWith('succeeded')", timeout=60_000)
    log = page.locator("#run-log").inner_text()
    assert "attempt 1 of 2" in log and "ingested 14" in log and "exited with code 0" in log
    assert page.locator("#run-duration").inner_text().endswith(" s")
    first = page.url
    page.click("#job-retry")
    page.wait_for_url(lambda u: u != first and "/runs/" in u)
    page.wait_for_function("document.querySelector('#job-state').innerText.startsWith('succeeded')", timeout=60_000)
    new_id = page.url.rsplit("/", 1)[1].split("?")[0]
    assert world.reg.get_run(new_id).parameters["retry_of"] == first.rsplit("/", 1)[1]
    shot(page, "job-run", request)
    page.close()


def test_annotations_are_coloured_by_role_and_each_role_can_be_hidden(browser, site) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from datalake import write_version
    from synth.shapes import shape_samples

    url, world = site
    s = shape_samples(1, seed=8, size=(320, 240))[0]
    anns = tuple(dataclasses.replace(a, role=("title" if i % 2 == 0 else "figure")) for i, a in enumerate(s.annotations))
    assert len(anns) >= 2
    write_version(world.lake, "roles", [dataclasses.replace(s, annotations=anns)])
    world.reg.register_version(world.lake.open_version("roles"))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{url}/datasets/roles/1/samples/0")
    assert page.locator(".role-toggle").count() == 2
    colour = {r: page.locator(f'#sample rect[data-role="{r}"]').first.evaluate("e => getComputedStyle(e).stroke")
              for r in ("title", "figure")}
    assert colour["title"] != colour["figure"]
    page.uncheck('input[data-role-toggle="figure"]')
    assert not page.locator('#sample rect[data-role="figure"]').first.is_visible()
    assert page.locator('#sample rect[data-role="title"]').first.is_visible()
    page.close()
