"""Screens to samples: dense grounding and icons, from generated pages, a pages folder or URLs.

A *screen* is one browser state: its screenshot, the elements the probe found (with their
boxes, click points, roles and names, in screenshot pixels) and the rejects by reason. Before a
screen is used every clickable element is clicked for real at its emitted point
(:func:`synth.gui.browser.verify_clicks`); an element the click does not reach is rejected
(``click_missed``), so no sample holds a target that a click would miss.

Counts (screens, targets, rejects by reason, failed pages) travel in the sample stream as
:class:`Count` items; ``mmlake synth`` adds them to the run's statistics.
"""

from __future__ import annotations

import io
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datalake.sample import Annotation, Media, MediaPart, Message, Sample, Source, TextPart
from synth.gui.browser import DEVICES, Browser, Device, SiteServer, probe_elements, verify_clicks
from synth.gui.pages import site

__all__ = ["Count", "split_counts", "Screen", "PageSource", "pick_device", "capture", "grounding_sample", "icon_samples", "collect", "ROLE_WORDS"]

log = logging.getLogger("mmlake.synth.gui")
ROLE_WORDS = {"link": "link", "button": "button", "textbox": "text field", "searchbox": "search box",
              "checkbox": "checkbox", "radio": "radio button", "tab": "tab", "menuitem": "menu item",
              "switch": "switch", "combobox": "drop-down list", "heading": "heading", "slider": "slider",
              "option": "option", "generic": "element"}
ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth")
GENERATED_DEVICES = {"desktop": ("desktop-1920", "desktop-1440", "desktop-1280", "desktop-1440@2x", "desktop-1280@2x"),
                     "mobile": ("mobile-390", "mobile-412"), "web": ("web-1280", "web-1366")}


@dataclass(frozen=True)
class Count:
    """A statistic of the run (``name`` like ``elements.rejected.occluded``), not a sample. With a
    ``key``, it also accounts for an input that gave no sample (a failed page, a failed task):
    the pipeline source writes it to the rejects table with its ``reason`` and ``detail``."""

    name: str
    n: int = 1
    key: str | None = None
    reason: str = ""
    detail: str = ""


def split_counts(items: Any) -> tuple[list[Sample], Counter[str]]:
    """A generator's stream as (samples, statistics)."""
    samples, stats = [], Counter()
    for x in items:
        if isinstance(x, Count):
            stats[x.name] += x.n
        else:
            samples.append(x)
    return samples, stats


@dataclass
class Screen:
    png: bytes
    width: int
    height: int
    device: Device
    url: str
    title: str
    elements: list[dict[str, Any]]
    rejected: dict[str, int]
    scroll_y: float = 0.0

    @property
    def targets(self) -> list[dict[str, Any]]:
        return [e for e in self.elements if e["clickable"]]

    def counts(self) -> Iterator[Count]:
        yield Count(f"screens.{self.device.platform}")
        yield Count("targets", len(self.targets))
        yield Count("elements", len(self.elements))
        for k, v in self.rejected.items():
            yield Count(f"elements.rejected.{k}", v)


def capture(page: Any, device: Device, *, min_size: float = 8.0) -> Screen:
    """Screenshot the current state, probe its elements, click every target to prove it."""
    from PIL import Image

    page.mouse.move(0, 0)
    res = probe_elements(page, device.dpr, min_size)
    png = page.screenshot(type="png", animations="disabled", caret="hide")
    w, h = Image.open(io.BytesIO(png)).size
    targets = [e for e in res["elements"] if e["clickable"]]
    ok = verify_clicks(page, [(e["id"], tuple(e["point"])) for e in targets], device.dpr, device.mobile)
    missed = {e["id"] for e, good in zip(targets, ok, strict=True) if not good}
    rejected = dict(res["rejected"])
    if missed:
        rejected["click_missed"] = len(missed)
    elements = [e for e in res["elements"] if e["id"] not in missed]
    for e in elements:  # clip to the screenshot (sub-pixel rounding at the edge)
        x0, y0, x1, y1 = e["box"]
        e["box"] = [max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)]
        e["point"] = [min(max(0.0, e["point"][0]), w - 0.5), min(max(0.0, e["point"][1]), h - 0.5)]
    return Screen(png, w, h, device, res["url"], res["title"], elements, rejected, res["scrollY"] * device.dpr)


# -- referring expressions ------------------------------------------------------------------------

def _role_word(e: dict[str, Any]) -> str:
    return ROLE_WORDS.get(e["role"], "element")


def expressions(elements: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """Unambiguous ways to refer to each element on one screen, by style: ``text`` (what it
    shows), ``name`` (its accessible name with its role), ``position`` (role + order from the top)
    and ``function`` (what it does, where the page says so). A style is left out for an element
    when another element on the screen would match the same words."""
    out: dict[int, dict[str, str]] = {e["id"]: {} for e in elements}
    by_text: dict[str, int] = {}
    by_name: dict[tuple[str, str], int] = {}
    for e in elements:
        if e["text"]:
            by_text[e["text"].lower()] = by_text.get(e["text"].lower(), 0) + 1
        by_name[(e["role"], e["name"].lower())] = by_name.get((e["role"], e["name"].lower()), 0) + 1
    for e in elements:
        word = _role_word(e)
        if e["text"] and by_text[e["text"].lower()] == 1 and len(e["text"]) <= 60:
            out[e["id"]]["text"] = f'"{e["text"]}"'
        if by_name[(e["role"], e["name"].lower())] == 1 and len(e["name"]) <= 60:
            out[e["id"]]["name"] = f'the {word} labelled "{e["name"]}"'
        if e.get("fn"):
            out[e["id"]]["function"] = f"the {word} that {e['fn']}"
    roles: dict[str, list[dict[str, Any]]] = {}
    for e in elements:
        roles.setdefault(e["role"], []).append(e)
    for same in roles.values():
        if len(same) == 1:
            out[same[0]["id"]]["position"] = f"the only {_role_word(same[0])} on the screen"
            continue
        order = sorted(same, key=lambda e: (round(e["box"][1] / 8), e["box"][0]))
        for k, e in enumerate(order[: len(ORDINALS)]):
            out[e["id"]]["position"] = f"the {ORDINALS[k]} {_role_word(e)} from the top"
    return out


# -- samples ----------------------------------------------------------------------------------------

def _meta(screen: Screen, source: dict[str, Any]) -> dict[str, Any]:
    d = screen.device
    return {"platform": d.platform, "device": d.name, "dpr": d.dpr, "viewport": [d.width, d.height],
            "url": source["path"], "title": screen.title, "scroll_y": round(screen.scroll_y, 1),
            "elements": {"found": len(screen.elements), "targets": len(screen.targets), "rejected": screen.rejected},
            "verified_clicks": len(screen.targets), **{k: v for k, v in source.items() if k not in ("path", "uri")}}


def _element_annotations(screen: Screen) -> tuple[list[Annotation], dict[int, int]]:
    anns, index = [], {}
    for e in screen.elements:
        index[e["id"]] = len(anns)
        attrs = {"tag": e["tag"], "clickable": e["clickable"], "icon": e["icon"],
                 "click": [round(v, 1) for v in e["point"]]}
        if e.get("type"):
            attrs["input_type"] = e["type"]
        if e.get("group"):
            attrs["group"] = e["group"]
        anns.append(Annotation(0, "box", xyxy=tuple(round(v, 1) for v in e["box"]), label=e["role"],  # type: ignore[arg-type]
                               text=e["name"], role="ui_element", attrs=attrs))
    return anns, index


def grounding_sample(screen: Screen, key: str, source: dict[str, Any], rng: np.random.Generator,
                     max_queries: int = 12) -> Sample | None:
    """One screenshot, many elements: questions in several referring styles answered by a click
    point (``{point:i}``) or a box (``{box:i}``); every element is kept as a ``ui_element`` box."""
    if not screen.elements:
        return None
    anns, index = _element_annotations(screen)
    exprs = expressions(screen.elements)
    pool = [e for e in screen.elements if exprs[e["id"]]]
    pick = [pool[int(i)] for i in rng.permutation(len(pool))[:max_queries]]
    turns: list[Message] = []
    styles_used: dict[str, int] = {}
    for n, e in enumerate(pick):
        styles = sorted(exprs[e["id"]])
        style = styles[int(rng.integers(len(styles)))]
        styles_used[style] = styles_used.get(style, 0) + 1
        expr = exprs[e["id"]][style]
        if e["clickable"] and rng.random() < 0.6:
            anns.append(Annotation(0, "point", xy=tuple(e["point"]), label=e["role"], text=e["name"],  # type: ignore[arg-type]
                                   role="click_point", attrs={"element": index[e["id"]]}))
            q = f"Where do you {'tap' if screen.device.mobile else 'click'} for {expr}?"
            a = f"{{point:{len(anns) - 1}}}"
        else:
            q = f"Give the bounding box of {expr}."
            a = f"{{box:{index[e['id']]}}}"
        user: tuple[Any, ...] = (MediaPart(0), TextPart(q)) if n == 0 else (TextPart(q),)
        turns += [Message("user", user), Message("assistant", (TextPart(a),))]
    if not turns:
        return None
    meta = _meta(screen, source) | {"task": "grounding", "expression_styles": styles_used}
    return Sample(key=key, kind="agent", source=Source(source["uri"], source.get("license")),
                  media=(Media("0.png", "image/png", screen.width, screen.height),), messages=tuple(turns),
                  annotations=tuple(anns), meta=meta, blobs={"0.png": screen.png})


def icon_samples(screen: Screen, key: str, source: dict[str, Any]) -> Iterator[Sample]:
    """Icon-only elements: one crop per icon with its label, and the screen with every icon as an
    in-context box ("What does the icon at {box:i} do?")."""
    from PIL import Image

    icons = [e for e in screen.elements if e["icon"] and e["name"]]
    if not icons:
        return
    img = Image.open(io.BytesIO(screen.png)).convert("RGB")
    meta = _meta(screen, source)
    for j, e in enumerate(icons):
        x0, y0, x1, y1 = e["box"]
        pad = 4 * screen.device.dpr
        crop = img.crop((int(max(0, x0 - pad)), int(max(0, y0 - pad)), int(min(screen.width, x1 + pad)),
                         int(min(screen.height, y1 + pad))))
        buf = io.BytesIO()
        crop.save(buf, format="PNG", optimize=False)
        answer = e["name"] + (f": it {e['fn']}." if e.get("fn") else ".")
        yield Sample(key=f"{key}c{j:02d}", kind="agent", source=Source(source["uri"], source.get("license")),
                     media=(Media("0.png", "image/png", crop.width, crop.height),),
                     messages=(Message("user", (MediaPart(0), TextPart("What does this icon mean in the interface?"))),
                               Message("assistant", (TextPart(answer),))),
                     meta=meta | {"task": "icon", "label": e["name"], "crop_of": [round(v, 1) for v in e["box"]]},
                     blobs={"0.png": buf.getvalue()})
    anns, index = _element_annotations(screen)
    turns: list[Message] = []
    for n, e in enumerate(icons):
        q = f"What does the icon at {{box:{index[e['id']]}}} do?"
        turns += [Message("user", ((MediaPart(0),) if n == 0 else ()) + (TextPart(q),)),
                  Message("assistant", (TextPart(e["name"] + (f": it {e['fn']}." if e.get("fn") else ".")),))]
    yield Sample(key=f"{key}s", kind="agent", source=Source(source["uri"], source.get("license")),
                 media=(Media("0.png", "image/png", screen.width, screen.height),), messages=tuple(turns),
                 annotations=tuple(anns), meta=meta | {"task": "icons_in_context"}, blobs={"0.png": screen.png})


# -- where pages come from --------------------------------------------------------------------------

@dataclass
class PageSource:
    """Generated pages (``folder`` and ``urls`` None), a folder of HTML served on 127.0.0.1, or
    the given URLs of a running web app (nothing else is opened)."""

    folder: Path | None = None
    urls: list[str] = field(default_factory=list)
    platforms: tuple[str, ...] = ("desktop", "mobile", "web")
    #: device profiles to use (names of ``synth.gui.browser.DEVICES``); empty: the platform's usual ones
    devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = [d for d in self.devices if d not in DEVICES]
        if unknown:
            raise ValueError(f"unknown device(s) {unknown}; known: {sorted(DEVICES)}")

    @property
    def kind(self) -> str:
        return "folder" if self.folder is not None else ("urls" if self.urls else "generated")

    def files(self) -> list[str]:
        assert self.folder is not None
        files = sorted(str(p.relative_to(self.folder)) for p in self.folder.rglob("*.html") if p.is_file())
        if not files:
            raise FileNotFoundError(f"no .html files under {self.folder}")
        return files


def pick_device(source: PageSource, rng: np.random.Generator) -> tuple[str, Device]:
    """A seeded (platform, device) for one screen or task: among ``source.devices`` when given."""
    platform = source.platforms[int(rng.integers(len(source.platforms)))]
    names = source.devices or GENERATED_DEVICES[platform]
    device = DEVICES[names[int(rng.integers(len(names)))]]
    return device.platform, device


def collect(source: PageSource, seed: int, indices: list[int], make: Any, *, tmp: Path,
            browser: Browser | None = None) -> Iterator[Sample | Count]:
    """For each index: open its page (generated from (seed, index), or the index-th file or URL
    of a seeded order) on a seeded device, capture the screen and yield what ``make(screen, key,
    source_info, rng)`` builds from it. A page that fails (crash, timeout) is counted
    (``pages.failed.<error>``) and the browser restarted; the run goes on."""
    own = browser is None
    br = browser or Browser(tuple(hostname(u) for u in source.urls))
    try:
        files = source.files() if source.kind == "folder" else None
        order = (np.random.default_rng([seed, 0x6A2]).permutation(len(files or source.urls))
                 if source.kind != "generated" else None)
        server = SiteServer(source.folder) if source.kind == "folder" else None
        with (server or _Null()):
            for index in indices:
                rng = np.random.default_rng([seed, index, 0x6A3])
                platform, device = pick_device(source, rng)
                if source.kind == "generated":
                    s = site(seed, index, platform)
                    root = s.write(tmp / f"site{index}")
                    srv_ctx: Any = SiteServer(root)
                    path = s.start
                    info = {"uri": f"synth://gui/{seed}/{index}", "license": "CC0-1.0", "path": s.start,
                            "synthetic": True, "components": s.meta["components"], "theme": s.meta["theme"],
                            "site": {"seed": seed, "index": index, "platform": platform}}
                else:
                    srv_ctx = _Null()
                    k = int(order[index % len(order)])  # type: ignore[index]
                    if files is not None:
                        path = "/" + files[k]
                        info = {"uri": (source.folder / files[k]).resolve().as_uri(),  # type: ignore[operator]
                                "path": path, "synthetic": False}
                    else:
                        path = source.urls[k]
                        info = {"uri": path, "path": path, "synthetic": False}
                try:
                    with srv_ctx as own_srv:
                        srv = own_srv or server
                        url = srv.url(path) if srv is not None else path
                        with br.page(device) as page:
                            page.goto(url, wait_until="load")
                            if device.platform == "web":
                                _scroll_to(page, rng)
                            screen = capture(page, device)
                            yield from screen.counts()
                            yield from make(screen, index, info, rng)
                except Exception as exc:  # noqa: BLE001 - one page never kills the run
                    from playwright.sync_api import Error as PlaywrightError

                    if not isinstance(exc, (PlaywrightError, TimeoutError, OSError)):
                        raise
                    log.warning("gui: page %s failed on %s: %s", path, device.name, exc)
                    yield Count(f"pages.failed.{type(exc).__name__}", key=f"page{index:06d}", reason="page_failed",
                                detail=f"{path} on {device.name}: {type(exc).__name__}: {str(exc)[:300]}")
                    br.restart()
    finally:
        if own:
            br.close()


def hostname(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or ""


def _scroll_to(page: Any, rng: np.random.Generator) -> None:
    """Web screens are taken at a seeded scroll position of the page (0, one or two screens down)."""
    h = page.evaluate("() => document.documentElement.scrollHeight - innerHeight")
    if h > 0:
        y = min(h, int(rng.integers(3)) * page.evaluate("() => innerHeight") * 0.9)
        page.evaluate(f"() => window.scrollTo(0, {int(y)})")


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def grounding(source: PageSource, seed: int, indices: list[int], *, tmp: Path,
              browser: Browser | None = None) -> Iterator[Sample | Count]:
    def make(screen: Screen, index: int, info: dict[str, Any], rng: np.random.Generator) -> Iterator[Sample]:
        s = grounding_sample(screen, f"guig{index:06d}", info | {"generator": "gui-grounding"}, rng)
        if s is not None:
            yield s
        else:
            yield Count("pages.no_elements", key=f"guig{index:06d}", reason="no_elements",
                        detail=f"{info['path']} on {screen.device.name}: nothing to refer to on the screen")

    return collect(source, seed, indices, make, tmp=tmp, browser=browser)


def icons(source: PageSource, seed: int, indices: list[int], *, tmp: Path,
          browser: Browser | None = None) -> Iterator[Sample | Count]:
    def make(screen: Screen, index: int, info: dict[str, Any], rng: np.random.Generator) -> Iterator[Sample | Count]:
        n = 0
        for s in icon_samples(screen, f"guii{index:06d}", info | {"generator": "gui-icons"}):
            n += 1
            yield s
        if not n:
            yield Count("pages.no_icons", key=f"guii{index:06d}", reason="no_icons",
                        detail=f"{info['path']} on {screen.device.name}: no icon-only control with a name")

    return collect(source, seed, indices, make, tmp=tmp, browser=browser)

