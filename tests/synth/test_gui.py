"""GUI agent data in a real browser (Playwright driving Debian's Chromium): targets are never
occluded, hidden or off-screen; every emitted click point, clicked again in a fresh browser,
hits its element (generated pages and the SQLite HTML manual from Debian's sqlite3-doc); boxes
match painted pixels at DPR 1, 2 and 3; every generated task type replays to its success
state; same seed -> same version digest; actions validate and tokenize."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from datalake.sample import Annotation, Media, MediaPart, Message, Sample, SampleError, Source, TextPart
from synth.gui.browser import DEVICES, Browser, SiteServer, probe_elements, verify_clicks
from synth.gui.collect import PageSource, capture, grounding, icons, split_counts
from synth.gui.pages import site
from synth.gui.trajectories import plan_task, replay, trajectories

DOCS = Path("/usr/share/doc/sqlite3")


@pytest.fixture(scope="module")
def browser() -> Any:
    with Browser() as br:
        yield br


OCCLUSION_PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body{margin:0;font:16px 'DejaVu Sans'} header{position:sticky;top:0;height:60px;background:#ddd;z-index:5}
.spacer{height:380px} .far{margin-top:1500px} .cover{position:fixed;left:300px;top:420px;width:100px;height:80px;
background:#c00;z-index:9} .overlay{position:fixed;left:0;right:0;bottom:0;height:160px;background:#0008;z-index:20}
.dialog{background:#fff;margin:20px;padding:10px;width:300px} #half{position:absolute;left:240px;top:720px}
.tiny{width:4px;height:4px;padding:0;border:0;min-width:0}
</style></head><body>
<header><button>Menu</button></header>
<div class="spacer"></div>
<button id="under">Under header</button>
<p style="height:40px"></p>
<button>Visible</button>
<button style="display:none">Gone</button><button style="visibility:hidden">Hidden</button>
<button style="opacity:0">Transparent</button><button disabled>Disabled</button>
<button class="tiny" aria-label="Tiny"></button>
<div style="position:absolute;top:840px;left:290px"><button style="width:60px;height:40px">Half</button></div>
<div class="cover"></div>
<div style="position:absolute;top:1130px;left:600px"><button>Behind overlay</button></div>
<div style="height:900px"></div>
<div class="overlay"><div class="dialog"><button>Inside overlay</button></div></div>
<button class="far">Far below</button>
</body></html>"""


def test_targets_are_visible_unoccluded_on_screen_and_every_click_hits(browser: Browser, tmp_path: Path) -> None:
    """A page with a sticky header, a fixed box over half a button, an overlay, elements scrolled
    out, hidden and disabled ones: exactly the reachable controls are targets."""
    (tmp_path / "index.html").write_text(OCCLUSION_PAGE)
    d = DEVICES["desktop-1280"]
    with SiteServer(tmp_path) as srv, browser.page(d) as page:
        page.goto(srv.url("/index.html"))
        page.evaluate("() => window.scrollTo(0, 430)")  # "Under header" now sits under the sticky header
        screen = capture(page, d)
        names = {e["name"] for e in screen.targets}
        assert names == {"Menu", "Visible", "Inside overlay"}, (names, screen.rejected)
        for reason in ("occluded", "invisible", "disabled", "too_small", "offscreen"):
            assert screen.rejected.get(reason, 0) >= 1, (reason, screen.rejected)
        # occluded: under the header, half under the fixed box, behind the overlay
        assert screen.rejected["occluded"] == 3 and screen.rejected["invisible"] == 3
        again = probe_elements(page, d.dpr)
        pts = [(e["id"], tuple(e["point"])) for e in again["elements"] if e["clickable"]]
        assert all(verify_clicks(page, pts, d.dpr, touch=False))


def _reverify(browser: Browser, s: Sample, root: Path) -> tuple[int, int]:
    """Open the sample's page in a fresh context of its device at its scroll position and click
    every emitted click point for real: (hits, emitted)."""
    d = DEVICES[s.meta["device"]]
    targets = [a for a in s.annotations if a.role == "ui_element" and a.attrs and a.attrs["clickable"]]
    targets += [s.annotations[a.attrs["element"]] for a in s.annotations if a.role == "click_point"]  # type: ignore[index]
    with SiteServer(root) as srv, browser.page(d) as page:
        page.goto(srv.url(s.meta["url"]), wait_until="load")
        page.evaluate(f"() => window.scrollTo(0, {s.meta['scroll_y'] / d.dpr})")
        fresh = {tuple(round(v) for v in e["box"]): e["id"] for e in probe_elements(page, d.dpr)["elements"]}
        pts = []
        for a in targets:
            eid = fresh.get(tuple(round(v) for v in a.xyxy))  # type: ignore[union-attr]
            pts.append((-1 if eid is None else eid, tuple(a.attrs["click"])))  # type: ignore[index]
        ok = verify_clicks(page, pts, d.dpr, d.mobile)
    return sum(ok), len(ok)


def test_generated_grounding_every_emitted_click_hits_its_element(browser: Browser, tmp_path: Path) -> None:
    samples, stats = split_counts(grounding(PageSource(), 3, list(range(6)), tmp=tmp_path, browser=browser))
    assert len(samples) == 6 and {s.meta["platform"] for s in samples} == {"desktop", "mobile", "web"}
    hit = total = 0
    for s in samples:
        root = site(**s.meta["site"]).write(tmp_path / f"again{s.key}")
        h, n = _reverify(browser, s, root)
        hit, total = hit + h, total + n
        styles = s.meta["expression_styles"]
        assert s.kind == "agent" and s.meta["verified_clicks"] == s.meta["elements"]["targets"]
        assert set(styles) <= {"text", "name", "position", "function"}
    assert total >= 100 and hit / total >= 0.995, (hit, total)
    assert stats["elements.rejected.invisible"] > 0 and stats["targets"] == sum(
        s.meta["elements"]["targets"] for s in samples)


def test_docs_grounding_every_emitted_click_hits_its_element(browser: Browser, tmp_path: Path) -> None:
    """Real pages: the SQLite manual (Debian sqlite3-doc, installed by the Makefile)."""
    assert DOCS.is_dir(), "apt-get install sqlite3-doc (make setup installs it)"
    samples, stats = split_counts(grounding(PageSource(folder=DOCS), 0, list(range(4)), tmp=tmp_path, browser=browser))
    assert len(samples) == 4
    hit = total = 0
    for s in samples:
        h, n = _reverify(browser, s, DOCS)
        hit, total = hit + h, total + n
        assert s.source.uri.startswith("file:///usr/share/doc/sqlite3/")
    assert total >= 60 and hit / total >= 0.99, (hit, total)


@pytest.mark.parametrize("device", ["desktop-1280", "desktop-1280@2x", "mobile-390"])
def test_boxes_match_painted_pixels(browser: Browser, tmp_path: Path, device: str) -> None:
    """Each target painted in a unique colour is found at its emitted box (IoU >= 0.95), at DPR
    1, 2 and 3 (native checkboxes and radios keep their own look and are left out). Chromium
    paints a background pixel-snapped (each edge rounded to a whole CSS pixel), so the emitted
    sub-pixel box is compared after the same rounding; every edge is also within one CSS pixel."""
    d = DEVICES[device]
    s = site(5, 1, d.platform)
    with SiteServer(s.write(tmp_path)) as srv, browser.page(d) as page:
        page.goto(srv.url(s.start))
        screen = capture(page, d)
        painted = [e for e in screen.targets if e["type"] not in ("checkbox", "radio", "date")]
        assert len(painted) >= 6
        css = "".join(
            f'[data-mm-id="{e["id"]}"]{{background:rgb(251,{k},3)!important;background-image:none!important;'
            f'border-color:rgb(251,{k},3)!important;color:transparent!important;box-shadow:none!important;'
            f'outline:none!important;border-radius:0!important;text-shadow:none!important}}'
            f'[data-mm-id="{e["id"]}"] *{{visibility:hidden!important}}'
            f'[data-mm-id="{e["id"]}"]::placeholder{{color:transparent!important}}'
            for k, e in enumerate(painted))
        page.add_style_tag(content=css)
        img = np.asarray(Image.open(io.BytesIO(page.screenshot(animations="disabled", caret="hide"))).convert("RGB"))
    assert img.shape[:2] == (d.height * d.dpr, d.width * d.dpr)
    for k, e in enumerate(painted):
        ys, xs = np.nonzero(np.all(img == (251, k, 3), axis=-1))
        assert len(xs), e
        got = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert max(abs(a - b) for a, b in zip(got, e["box"], strict=True)) <= d.dpr + 0.2, (e["name"], e["box"], got)
        x0, y0, x1, y1 = (float(np.floor(v / d.dpr + 0.5)) * d.dpr for v in e["box"])
        inter = max(0, min(x1, got[2]) - max(x0, got[0])) * max(0, min(y1, got[3]) - max(y0, got[1]))
        union = (x1 - x0) * (y1 - y0) + (got[2] - got[0]) * (got[3] - got[1]) - inter
        assert inter / union >= 0.95, (e["name"], e["box"], got)


def test_every_generated_task_type_replays_to_its_success_state(browser: Browser, tmp_path: Path) -> None:
    kinds: dict[str, int] = {}
    for i in range(60):  # the first index of each task type (planned without a browser)
        _rng, platform, _dev, task, *_ = plan_task(PageSource(), 7, i)
        if task is not None and task.kind not in kinds:
            kinds[task.kind] = i
        if platform == "mobile" and "mobile" not in kinds:
            kinds["mobile"] = i
    assert set(kinds) >= {"form", "menu", "click", "search", "scroll", "mobile"}
    samples, stats = split_counts(trajectories(PageSource(), 7, sorted(set(kinds.values())), tmp=tmp_path, browser=browser))
    assert stats["trajectories.succeeded"] == len(samples) == len(set(kinds.values())), dict(stats)
    assert {s.meta["trajectory"]["kind"] for s in samples} >= {"form", "menu", "click", "search", "scroll"}
    for s in samples:
        assert replay(s, browser=browser, tmp=tmp_path), s.meta["trajectory"]
        steps = s.meta["trajectory"]["steps"]
        assert len(s.media) == len(steps) and len(s.messages) == 2 * len(steps)
        assert s.messages[0].content[0].text.startswith("Task: ")
        assert all(m.content[0].text.startswith("Thought: ") for m in s.messages[1::2])
        actions = {st["action"] for st in steps}
        assert actions <= ({"tap", "type", "swipe"} if s.meta["platform"] == "mobile" else
                           {"click", "type", "select", "scroll", "hotkey"})
    # the registry's sample viewer shows it step by step: each screenshot with its target box and
    # action point, the action placeholders marked with what they do
    from registry.web.views import sample_view

    s = max(samples, key=lambda x: len(x.media))
    v = sample_view(s.to_json(), lambda name: f"/m/{name}")
    assert len(v["media"]) == len(s.media) >= 2
    assert all('class="ann-point"' in str(m["overlay"]) for m in v["media"])
    assert [p["media"] for m in v["messages"] if m["role"] == "user" for p in m["parts"] if "media" in p] == list(
        range(len(s.media)))
    assistant = " ".join(str(p["text"]) for m in v["messages"] if m["role"] == "assistant" for p in m["parts"])
    assert assistant.count('class="ph ph-action"') == len(s.media) - sum(  # written out: tap(x=.., y=..)
        1 for st in s.meta["trajectory"]["steps"] if st["annotation"] is None)
    # a tampered trajectory (its last click moved to the screen corner) no longer succeeds
    s = samples[0]
    last = s.meta["trajectory"]["steps"][-1]["annotation"]
    moved = list(s.annotations)
    moved[last] = Annotation(moved[last].media, "point", xy=(1.0, 1.0), action=moved[last].action,
                             role="action", attrs=moved[last].attrs)
    assert not replay(Sample(**{**s.__dict__, "annotations": tuple(moved)}), browser=browser, tmp=tmp_path)


def test_docs_link_path_trajectory_replays(browser: Browser, tmp_path: Path) -> None:
    samples, stats = split_counts(trajectories(PageSource(folder=DOCS, platforms=("desktop",)), 1, [0, 1], tmp=tmp_path,
                                       browser=browser))
    assert samples, dict(stats)
    for s in samples:
        t = s.meta["trajectory"]
        assert t["kind"] == "link_path" and t["steps"][-1]["url"] == t["success"]["path"]
        assert replay(s, browser=browser, tmp=tmp_path)


def test_same_seed_same_version_digest_and_run_statistics(tmp_path: Path) -> None:
    from datalake.version import Lake
    from registry.service import Registry
    from synth.run import run_synth

    digests, keys = [], []
    for k in range(2):
        reg = Registry(f"sqlite:///{tmp_path / f'r{k}.db'}")
        res = run_synth(reg, Lake.open(str(tmp_path / f"lake{k}")), ["gui-grounding", "gui-icons", "gui-trajectories"],
                        "gui", 6, seed=11, progress=False)
        digests.append(res.version.manifest.digest)
        keys.append({x.key: hashlib.sha256(x.to_json_bytes() + b"".join(x.blobs.values())).hexdigest()[:12]
                     for x in res.version})
        counts = res.run.counts
        assert counts["stats"]["targets"] > 0 and counts["kept"] == res.samples
        assert sum(v for k2, v in counts["stats"].items() if k2.startswith("screens.")) >= 4
    assert keys[0] == keys[1], {k: (v, keys[1].get(k)) for k, v in keys[0].items() if keys[1].get(k) != v}
    assert digests[0] == digests[1]


def test_a_failing_page_is_counted_and_the_run_goes_on(browser: Browser, tmp_path: Path) -> None:
    (tmp_path / "ok.html").write_text("<!doctype html><title>ok</title><button>Go</button>")
    with SiteServer(tmp_path) as srv:
        bad = "http://127.0.0.1:9/nothing-listens-here.html"
        samples, stats = split_counts(grounding(PageSource(urls=[bad, srv.url("/ok.html")], platforms=("desktop",)), 0,
                                        [0, 1], tmp=tmp_path, browser=browser))
    assert len(samples) == 1 and sum(v for k, v in stats.items() if k.startswith("pages.failed.")) == 1


def test_icons_have_crops_and_in_context_boxes(browser: Browser, tmp_path: Path) -> None:
    from synth.gui.pages import ICONS

    samples, _ = split_counts(icons(PageSource(platforms=("desktop",)), 2, list(range(5)), tmp=tmp_path, browser=browser))
    crops = [s for s in samples if s.meta["task"] == "icon"]
    ctx = [s for s in samples if s.meta["task"] == "icons_in_context"]
    assert len(crops) >= 5 and len(ctx) >= 2
    assert all(s.meta["label"] in ICONS.values() for s in crops)
    for s in crops:
        w, h = Image.open(io.BytesIO(s.blobs["0.png"])).size
        assert (w, h) == (s.media[0].width, s.media[0].height) and w < 200


def test_action_schema_validates_and_the_loader_renders_actions_after_augmentation() -> None:
    from loader.render import SampleProcessor
    from loader.tokenizer import default_tokenizer

    png = io.BytesIO()
    Image.new("RGB", (560, 280), "white").save(png, format="PNG")
    media = (Media("0.png", "image/png", 560, 280),)

    def sample(anns: tuple[Annotation, ...], text: str, platform: str = "desktop") -> Sample:
        return Sample(key="a", kind="agent", source=Source("synth://t"), media=media,
                      messages=(Message("user", (TextPart("Task: go"), MediaPart(0))),
                                Message("assistant", (TextPart(text),))),
                      annotations=anns, meta={"platform": platform}, blobs={"0.png": png.getvalue()})

    click = Annotation(0, "point", xy=(280.0, 140.0), action="click")
    with pytest.raises(SampleError, match="not a mobile action"):
        sample((click,), "{action:0}", platform="mobile")
    with pytest.raises(SampleError, match="unknown action"):
        sample((Annotation(0, "point", xy=(1.0, 1.0), action="teleport"),), "{action:0}")
    with pytest.raises(SampleError, match="needs an end point"):
        sample((Annotation(0, "point", xy=(1.0, 1.0), action="drag"),), "{action:0}")
    with pytest.raises(SampleError, match="without an action"):
        sample((Annotation(0, "point", xy=(1.0, 1.0)),), "{action:0}")
    with pytest.raises(SampleError, match="argument"):
        sample((Annotation(0, "point", xy=(1.0, 1.0), action="type", attrs={"args": {"txt": "x"}}),), "{action:0}")
    s = sample((click, Annotation(0, "point", xy=(560.0, 0.0)),
                Annotation(0, "point", xy=(28.0, 28.0), action="drag", attrs={"to": 1}),
                Annotation(0, "point", xy=(56.0, 56.0), action="type", attrs={"args": {"text": "ada"}})),
               "Thought: t\nAction: {action:0} {action:2} {action:3}")
    tok = default_tokenizer()
    item = SampleProcessor(tok, seed=0, policy={"max_pixels": 280 * 140}, seq_len=2048).process(s, dataset="g", epoch=0)
    text = tok.decode(item.ids.tolist())
    assert "Action: click(x=500, y=500) drag(x=50, y=100, x2=1000, y2=0) type(x=100, y=200, text=\"ada\")" in text
    assert item.grids[0] == (10, 20)  # the image was resized; the actions follow it
    lab = item.labels[item.labels != -100]
    assert tok.decode(lab.tolist()).startswith("Thought: t")  # loss only on the assistant turn
