"""Multi-step trajectories executed for real in the browser, and their replay.

A task (from the generated page's :class:`synth.gui.pages.Task` list, or a link path found by
search over a pages folder's links) is carried out step by step: capture the screen (every
target verified by a click), find the element the step needs among the *verified* targets --
scrolling (``scroll`` on desktop and web, a touch ``swipe`` on mobile) while it is not on screen --
and perform the action through the mouse, touchscreen and keyboard at the emitted point. The
task ends in a checked success condition (``#status`` text, the page path); only successful
runs become samples, failed ones are counted by reason (``trajectories.failed.<reason>``).

A trajectory is one ordered multi-image ChatML conversation: the goal and the first screenshot,
then per step an assistant turn with a templated thought (what is seen, what is needed, why this
action) and the action as an ``{action:i}`` placeholder (or a text action such as
``hotkey(keys="enter")``), and the next screenshot as the following user turn. ``meta.trajectory``
holds what :func:`replay` needs to re-execute it from its start page.
"""

from __future__ import annotations

import html.parser
import logging
import posixpath
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datalake.actions import format_action
from datalake.sample import Annotation, Media, MediaPart, Message, Sample, Source, TextPart
from synth.gui.browser import Browser, Device, SiteServer
from synth.gui.collect import Count, PageSource, Screen, capture, expressions, pick_device
from synth.gui.pages import Task, site

__all__ = ["TaskFailed", "Recorder", "trajectories", "replay", "link_graph", "find_link_task"]

log = logging.getLogger("mmlake.synth.gui")
MAX_SCROLLS = 8
SCROLL_PX = 400  # CSS pixels per scroll step (amount=4 notches of 100 px)
#: Chromium's touch slop moves one swipe's result by up to ~15 CSS px between runs; a swipe lands
#: on the offset the finger's travel gives, and a replay fails if it ends this far from the record
SWIPE_JITTER = 40.0
#: buttons that close what covers a page (a modal dialog, a cookie notice)
DISMISS = ("Accept", "Got it")


class TaskFailed(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass
class Step:
    screen: Screen
    action: str
    element: dict[str, Any] | None
    point: tuple[float, float] | None = None
    end: tuple[float, float] | None = None
    args: dict[str, Any] = field(default_factory=dict)
    thought: str = ""
    url: str = ""
    status: str = ""
    scroll_y: float = 0.0


class Recorder:
    """Executes actions for real on ``page`` and records the steps."""

    def __init__(self, page: Any, device: Device, server: SiteServer | None) -> None:
        self.page, self.device, self.server = page, device, server
        self.steps: list[Step] = []
        self.screen: Screen | None = None

    # -- observing ------------------------------------------------------------------------------
    def look(self) -> Screen:
        self.screen = capture(self.page, self.device)
        log.debug("gui: look %s: %d targets", self.path(), len(self.screen.targets))
        return self.screen

    def status(self) -> str:
        return str(self.page.evaluate("() => (document.getElementById('status') || {}).textContent || ''"))

    def path(self) -> str:
        url = self.page.url
        return (self.server.path_of(url) if self.server is not None else None) or url

    def find(self, pred: Any, what: str) -> dict[str, Any]:
        """The verified target matching ``pred``, scrolling down to it when needed."""
        for _ in range(MAX_SCROLLS + 3):
            screen = self.screen or self.look()
            for e in screen.targets:
                if pred(e):
                    return e
            blocker = next((e for e in screen.targets if e["name"] in DISMISS and e.get("group") in ("dialog", None)
                            and e["role"] == "button"), None)
            if blocker is not None:
                self.click(blocker, f"A {'dialog' if blocker.get('group') == 'dialog' else 'notice'} is open "
                                    f"and {what} is not in view. I dismiss it with \"{blocker['name']}\".")
                continue
            if not self.scroll(f"{what} is not on the screen yet"):
                break
        raise TaskFailed("target_not_found", what)

    # -- acting ---------------------------------------------------------------------------------
    def _css(self, xy: tuple[float, float]) -> tuple[float, float]:
        return xy[0] / self.device.dpr, xy[1] / self.device.dpr

    def scroll(self, why: str) -> bool:
        """Scroll one step down; False when the page is already at the bottom."""
        screen = self.screen or self.look()
        at_bottom = self.page.evaluate("() => Math.ceil(scrollY + innerHeight) >= document.documentElement.scrollHeight")
        if at_bottom:
            return False
        x, y = screen.width / 2, screen.height * 0.6
        if self.device.mobile:
            end = (x, y - SCROLL_PX * self.device.dpr * 0.75)
            self._do(Step(screen, "swipe", None, (x, y), end, {}, f"{why}, so I swipe up to see more."))
        else:
            self._do(Step(screen, "scroll", None, (x, y), None, {"direction": "down", "amount": SCROLL_PX // 100},
                          f"{why}, so I scroll down."))
        return True

    def click(self, e: dict[str, Any], thought: str) -> None:
        self._do(Step(self.screen or self.look(), "tap" if self.device.mobile else "click", e,
                      tuple(e["point"]), None, {}, thought))  # type: ignore[arg-type]

    def type_into(self, e: dict[str, Any], text: str, thought: str) -> None:
        self._do(Step(self.screen or self.look(), "type", e, tuple(e["point"]), None, {"text": text}, thought))  # type: ignore[arg-type]

    def select(self, e: dict[str, Any], option: str, thought: str) -> None:
        self._do(Step(self.screen or self.look(), "select", e, tuple(e["point"]), None, {"option": option}, thought))  # type: ignore[arg-type]

    def hotkey(self, keys: str, thought: str) -> None:
        self._do(Step(self.screen or self.look(), "hotkey", None, None, None, {"keys": keys}, thought))

    def _do(self, step: Step) -> None:
        log.debug("gui: %s %s at %s %s", step.action, step.element and step.element["name"], step.point, step.args)
        perform(self.page, self.device, step.action, step.point, step.end, step.args)
        step.url, step.status = self.path(), self.status()
        step.scroll_y = float(self.page.evaluate("() => scrollY"))
        self.steps.append(step)
        self.screen = None  # the state changed: look again before the next step


def perform(page: Any, device: Device, action: str, point: tuple[float, float] | None,
            end: tuple[float, float] | None, args: dict[str, Any]) -> None:
    """Carry out one action for real (points in screenshot pixels)."""
    dpr = device.dpr
    xy = (point[0] / dpr, point[1] / dpr) if point is not None else None
    if action in ("click", "tap", "type", "select", "double_click", "right_click", "long_press") and xy is None:
        raise ValueError(f"{action} needs a point")
    if action == "tap":
        page.touchscreen.tap(*xy)
    elif action == "click":
        page.mouse.click(*xy)
    elif action == "double_click":
        page.mouse.dblclick(*xy)
    elif action == "right_click":
        page.mouse.click(*xy, button="right")
    elif action == "type":
        if device.mobile:
            page.touchscreen.tap(*xy)
        else:
            page.mouse.click(*xy)
        page.keyboard.type(args["text"])
    elif action == "select":
        handle = page.evaluate_handle("([x, y]) => document.elementFromPoint(x, y)", list(xy))  # type: ignore[arg-type]
        el = handle.as_element()
        if el is None:
            raise TaskFailed("target_not_found", f"nothing at {xy}")
        el.select_option(label=args["option"])
    elif action == "hotkey":
        page.keyboard.press("+".join(k.capitalize() if len(k) > 1 else k for k in args["keys"].split("+")))
    elif action == "scroll":
        page.mouse.move(*xy)  # type: ignore[misc]
        dy = 100 * int(args.get("amount", 4)) * (1 if args.get("direction", "down") == "down" else -1)
        page.mouse.wheel(0, dy)
        _settle(page)
    elif action == "swipe":
        assert xy is not None and end is not None
        before, top = page.evaluate("() => [scrollY, document.documentElement.scrollHeight - innerHeight]")
        planned = min(max(0.0, before + (xy[1] - end[1] / dpr)), float(top))
        _touch_drag(page, xy, (end[0] / dpr, end[1] / dpr))
        _settle(page)
        # Chromium's touch slop leaves a few px of run-to-run jitter, and on a loaded machine a
        # touch move can be coalesced or a fling can start: land exactly where the finger went,
        # so the next screenshot (and a replay) is a pure function of the recorded actions
        got = float(page.evaluate("() => scrollY"))
        if abs(got - planned) > SWIPE_JITTER:
            log.debug("gui: swipe scrolled to %.0f, the finger went to %.0f", got, planned)
        page.evaluate(f"() => window.scrollTo(scrollX, {planned})")
        _settle(page)
    elif action == "back":
        page.go_back()
    elif action == "navigate":
        page.goto(args["url"])
    else:
        raise ValueError(f"cannot perform {action!r}")
    quiesce(page)  # first: an input event sent while a link's navigation starts can hang (seen in CI)
    if not device.mobile:
        page.mouse.move(0, 0)


def quiesce(page: Any) -> None:
    """Wait for a navigation the action may have started (a link click) to finish loading."""
    from playwright.sync_api import Error as PlaywrightError

    page.wait_for_timeout(40)
    for _ in range(20):
        try:
            page.wait_for_load_state("load", timeout=10000)
            page.evaluate("() => document.readyState")
            return
        except PlaywrightError as exc:
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc).lower():
                raise


def _touch_drag(page: Any, a: tuple[float, float], b: tuple[float, float], steps: int = 10) -> None:
    """A finger from ``a`` to ``b`` (CSS px): touch events one frame apart, then a pause before
    lifting so no fling follows (the distance does not depend on timing)."""
    cdp = page.context.new_cdp_session(page)
    frame = "() => new Promise(r => requestAnimationFrame(() => r(0)))"
    try:
        for i in range(steps + 1):
            x, y = a[0] + (b[0] - a[0]) * i / steps, a[1] + (b[1] - a[1]) * i / steps
            cdp.send("Input.dispatchTouchEvent", {"type": "touchStart" if i == 0 else "touchMove",
                                                  "touchPoints": [{"x": x, "y": y}]})
            page.evaluate(frame)
        page.wait_for_timeout(150)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": b[0], "y": b[1]}]})
        page.wait_for_timeout(150)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    finally:
        cdp.detach()


def _settle(page: Any) -> None:
    """Wait until the scroll position stops moving (two equal readings one frame apart)."""
    last = None
    for _ in range(30):
        y = page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(scrollY)))")
        if y == last:
            return
        last = y


# -- tasks ------------------------------------------------------------------------------------------

def _named(name: str, roles: tuple[str, ...] | None = None) -> Any:
    low = name.lower()
    return lambda e: e["name"].lower() == low and (roles is None or e["role"] in roles)


def _say(rec: Recorder, e: dict[str, Any], need: str) -> str:
    screen = rec.screen or rec.look()
    ex = expressions(screen.targets).get(e["id"], {})
    ref = ex.get("name") or ex.get("text") or ex.get("position") or f'"{e["name"]}"'
    title = screen.title or "page"
    return f"I see the {title} screen. {need} That is {ref}."


def run_task(rec: Recorder, task: Task, rng: np.random.Generator) -> None:
    p = task.params
    if task.kind == "form":
        for f in p["fields"]:
            if f["field"] in ("name", "email"):
                label = {"name": "Full name", "email": "Email"}[f["field"]]
                e = rec.find(lambda e, lab=label: e["role"] == "textbox" and e["name"].lower().startswith(lab.lower()),
                             f"the {label} field")
                rec.type_into(e, f["text"], _say(rec, e, f"The form needs the {label.lower()} {f['text']}.")
                              + " I type it there.")
            elif f["field"] == "plan" and rec.device.platform == "web":
                e = rec.find(lambda e: e["role"] == "combobox", "the plan list")
                rec.select(e, f["option"], _say(rec, e, f"The plan must be {f['option']}.") + " I choose it.")
            elif f["field"] in ("plan", "size"):
                e = rec.find(_named(f["option"], ("radio",)), f"the {f['option']} option")
                rec.click(e, _say(rec, e, f"The {f['field']} must be {f['option']}.") + " I select it.")
            elif f["field"] == "agree":
                e = rec.find(lambda e: e["role"] == "checkbox" and "terms" in e["name"].lower(), "the terms checkbox")
                rec.click(e, _say(rec, e, "The terms must be accepted.") + " I tick the box.")
        e = rec.find(_named("Create account", ("button",)), "the submit button")
        rec.click(e, _say(rec, e, "Everything is filled in; the form must be sent.") + " I submit it.")
    elif task.kind in ("menu", "click"):
        for name, role, group in p["steps"]:
            e = rec.find(lambda e, n=name, r=role, g=group: _named(n, (r,))(e) and (g is None or e.get("group") == g),
                         f"the {name} {role}")
            rec.click(e, _say(rec, e, f"Next I need {name}.") + " I open it.")
    elif task.kind == "search":
        e = rec.find(lambda e: e["role"] == "searchbox", "the search box")
        rec.type_into(e, p["query"], _say(rec, e, f"I must search for {p['query']}.") + " I type the query.")
        if not rec.device.mobile and rng.random() < 0.5:
            rec.hotkey("enter", f"The query {p['query']} is typed. Pressing Enter runs the search.")
        else:
            e = rec.find(lambda e: _named("Search", ("button",))(e) and e.get("group") == "form", "the search button")
            rec.click(e, _say(rec, e, "The query is typed; the search must run.") + " I press it.")
        e = rec.find(_named(p["result"], ("link",)), f"the result {p['result']}")
        rec.click(e, _say(rec, e, f"The results list {p['result']}.") + " I open it.")
    elif task.kind == "scroll":
        e = rec.find(_named(p["label"], ("button",)), f"the {p['label']} button")
        rec.click(e, _say(rec, e, f"The {p['label']} button is now in view.") + " I click it.")
    elif task.kind == "link_path":
        for nxt in p["path"][1:]:
            title = p["titles"].get(nxt, nxt)
            e = rec.find(lambda e, n=nxt: e["role"] == "link" and e.get("href") is not None
                         and rec.server is not None and rec.server.path_of(e["href"]) == n, f"a link to {nxt}")
            rec.click(e, _say(rec, e, f"The way to \"{p['titles'][p['path'][-1]]}\" goes through \"{title}\".")
                      + " I follow the link.")
    else:
        raise ValueError(f"unknown task kind {task.kind!r}")


def succeeded(page: Any, rec_path: str, status: str, success: dict[str, str]) -> bool:
    if "status" in success and status.strip() != success["status"]:
        return False
    return not ("path" in success and rec_path != success["path"])


# -- link paths over a pages folder -------------------------------------------------------------------

class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def link_graph(folder: Path, files: list[str], first: int = 40) -> tuple[dict[str, list[str]], dict[str, str]]:
    """``/path`` -> linked ``/paths`` inside the folder (the ``first`` ones in document order, so a
    path stays within a few scrolls; fragments and queries dropped), and titles."""
    known = {"/" + f for f in files}
    graph, titles = {}, {}
    for f in files:
        p = _Links()
        try:
            p.feed((folder / f).read_text(encoding="utf-8", errors="replace"))
        except Exception:  # noqa: BLE001 - a page we cannot parse has no links
            continue
        here = "/" + f
        titles[here] = " ".join(p.title.split()) or f
        out = []
        for href in p.links:
            if "://" in href or href.startswith(("mailto:", "javascript:", "#")):
                continue
            target = posixpath.normpath(posixpath.join(posixpath.dirname(here), href.split("#")[0].split("?")[0]))
            if target in known and target != here and target not in out:
                out.append(target)
        graph[here] = out[:first]
    return graph, titles


def find_link_task(graph: dict[str, list[str]], titles: dict[str, str], rng: np.random.Generator,
                   depth: int = 2) -> Task | None:
    """A seeded start page and a target ``depth`` links away (shortest path found by BFS)."""
    starts = sorted(p for p, out in graph.items() if out)
    for _ in range(20):
        if not starts:
            return None
        start = starts[int(rng.integers(len(starts)))]
        prev: dict[str, str | None] = {start: None}
        q, level = deque([start]), {start: 0}
        while q:
            u = q.popleft()
            if level[u] == depth:
                continue
            for v in graph.get(u, []):
                if v not in prev:
                    prev[v], level[v] = u, level[u] + 1
                    q.append(v)
        far = sorted(v for v, d in level.items() if d == depth)
        if not far:
            continue
        target = far[int(rng.integers(len(far)))]
        path = [target]
        while prev[path[-1]] is not None:
            path.append(prev[path[-1]])  # type: ignore[arg-type]
        path.reverse()
        return Task("link_path", f"Open the page \"{titles.get(target, target)}\".",
                    {"path": path, "titles": {p: titles.get(p, p) for p in path}}, {"path": target})
    return None


# -- samples ------------------------------------------------------------------------------------------

def trajectory_sample(key: str, task: Task, rec: Recorder, start: str, info: dict[str, Any]) -> Sample:
    media, blobs, anns, msgs = [], {}, [], []
    steps_meta = []
    for i, st in enumerate(rec.steps):
        name = f"{i}.png"
        media.append(Media(name, "image/png", st.screen.width, st.screen.height))
        blobs[name] = st.screen.png
        ann_idx = None
        if st.element is not None:
            anns.append(Annotation(i, "box", xyxy=tuple(round(v, 1) for v in st.element["box"]),  # type: ignore[arg-type]
                                   label=st.element["role"], text=st.element["name"], role="ui_element",
                                   attrs={"step": i}))
        if st.point is not None:
            attrs: dict[str, Any] = {"step": i}
            if st.args:
                attrs["args"] = dict(st.args)
            if st.end is not None:
                anns.append(Annotation(i, "point", xy=(round(st.end[0], 1), round(st.end[1], 1)), role="action_end",
                                       attrs={"step": i}))
                attrs["to"] = len(anns) - 1
            anns.append(Annotation(i, "point", xy=(round(st.point[0], 1), round(st.point[1], 1)), action=st.action,
                                   role="action", attrs=attrs))
            ann_idx = len(anns) - 1
            act = f"{{action:{ann_idx}}}"
        else:
            act = format_action(st.action, None, st.args)
        user = (TextPart(f"Task: {task.goal}"), MediaPart(i)) if i == 0 else (MediaPart(i),)
        msgs += [Message("user", user), Message("assistant", (TextPart(f"Thought: {st.thought}\nAction: {act}"),))]
        steps_meta.append({"action": st.action, "annotation": ann_idx, "args": dict(st.args), "url": st.url,
                           "status": st.status, "scroll_y": st.scroll_y})
    last = rec.steps[-1].screen
    meta = {"platform": last.device.platform, "device": last.device.name, "dpr": last.device.dpr,
            "viewport": [last.device.width, last.device.height], "task": "trajectory",
            "trajectory": {"kind": task.kind, "goal": task.goal, "start": start, "success": task.success,
                           "steps": steps_meta},
            **{k: v for k, v in info.items() if k not in ("uri", "license", "path")}}
    return Sample(key=key, kind="agent", source=Source(info["uri"], info.get("license")), media=tuple(media),
                  messages=tuple(msgs), annotations=tuple(anns), meta=meta, blobs=blobs)


def plan_task(source: PageSource, seed: int, index: int, tmp: Path | None = None,
              graph: dict[str, list[str]] | None = None, titles: dict[str, str] | None = None) -> tuple[Any, ...]:
    """What trajectory ``index`` does, without a browser: ``(rng, platform, device, task, site
    root, source info, start path)``; the site is written under ``tmp`` when given."""
    rng = np.random.default_rng([seed, index, 0x6A4])
    platform, device = pick_device(source, rng)
    if source.kind == "folder":
        if graph is None:
            graph, titles = link_graph(source.folder, source.files())  # type: ignore[arg-type]
        task = find_link_task(graph, titles or {}, rng, depth=int(rng.integers(1, 3)))
        info = {"uri": source.folder.resolve().as_uri(), "synthetic": False, "folder": str(source.folder)}  # type: ignore[union-attr]
        return rng, platform, device, task, source.folder, info, task.params["path"][0] if task else "/"
    if source.kind != "generated":
        raise ValueError("trajectories run on generated pages or a pages folder, not on URLs")
    s = site(seed, index, platform)
    task = s.tasks[int(rng.integers(len(s.tasks)))] if s.tasks else None
    root = s.write(tmp / f"traj{index}") if tmp is not None else None
    info = {"uri": f"synth://gui/{seed}/{index}", "license": "CC0-1.0", "synthetic": True,
            "site": {"seed": seed, "index": index, "platform": platform}}
    return rng, platform, device, task, root, info, s.start


def trajectories(source: PageSource, seed: int, indices: list[int], *, tmp: Path,
                 browser: Browser | None = None) -> Iterator[Sample | Count]:
    """One task per index, carried out for real; successful runs become samples."""
    own = browser is None
    br = browser or Browser()
    graph = titles = None
    files = source.files() if source.kind == "folder" else None
    if files is not None:
        graph, titles = link_graph(source.folder, files)  # type: ignore[arg-type]
    try:
        for index in indices:
            rng, platform, device, task, root, info, start = plan_task(source, seed, index, tmp, graph, titles)
            yield Count(f"trajectories.attempted.{platform}")
            key = f"guit{index:06d}"
            if task is None:
                yield Count("trajectories.failed.no_task", key=key, reason="no_task",
                            detail=f"{start}: no task this page supports (a form, a menu, a link path ...)")
                continue
            info["generator"] = "gui-trajectories"
            try:
                with SiteServer(root) as srv, br.page(device) as page:  # type: ignore[arg-type]
                    page.goto(srv.url(start), wait_until="load")
                    rec = Recorder(page, device, srv)
                    run_task(rec, task, rng)
                    if not succeeded(page, rec.path(), rec.status(), task.success):
                        raise TaskFailed("success_not_reached", f"status {rec.status()!r}, at {rec.path()}")
            except TaskFailed as exc:
                yield Count(f"trajectories.failed.{exc.reason}", key=key, reason=exc.reason,
                            detail=f"{task.goal} ({start} on {device.name}): {exc}")
                continue
            except Exception as exc:  # noqa: BLE001 - a crashed page is a counted reject
                from playwright.sync_api import Error as PlaywrightError

                if not isinstance(exc, (PlaywrightError, TimeoutError, OSError)):
                    raise
                yield Count("trajectories.failed.browser_error", key=key, reason="browser_error",
                            detail=f"{task.goal} ({start} on {device.name}): {type(exc).__name__}: {str(exc)[:300]}")
                br.restart()
                continue
            for st in rec.steps:
                yield from st.screen.counts()
            yield Count("trajectories.succeeded")
            yield Count("trajectory_steps", len(rec.steps))
            yield trajectory_sample(key, task, rec, start, info)
    finally:
        if own:
            br.close()


def replay(sample: Sample, *, browser: Browser, tmp: Path, folder: Path | None = None) -> bool:
    """Re-execute a stored trajectory's actions from its start page (points from its annotations,
    in a fresh browser context of the same device) and check its success condition."""
    from synth.gui.browser import DEVICES

    meta = sample.meta
    traj = meta["trajectory"]
    device = DEVICES[meta["device"]]
    if "site" in meta:
        st = meta["site"]
        root = site(st["seed"], st["index"], st["platform"]).write(tmp / f"replay{st['index']}")
    else:
        root = Path(folder or meta["folder"])
    with SiteServer(root) as srv, browser.page(device) as page:
        page.goto(srv.url(traj["start"]), wait_until="load")
        for step in traj["steps"]:
            point = end = None
            if step["annotation"] is not None:
                a = sample.annotations[step["annotation"]]
                point = a.xy
                to = (a.attrs or {}).get("to")
                end = sample.annotations[to].xy if to is not None else None
            if not device.mobile:
                page.mouse.move(0, 0)
            perform(page, device, step["action"], point, end, step["args"])  # type: ignore[arg-type]
            if step["action"] == "swipe":  # touch slop: a few px of jitter between runs of one swipe
                y = float(page.evaluate("() => scrollY"))
                if abs(y - step["scroll_y"]) > SWIPE_JITTER:
                    return False
                page.evaluate(f"() => window.scrollTo(scrollX, {step['scroll_y']})")
        status = str(page.evaluate("() => (document.getElementById('status') || {}).textContent || ''"))
        return succeeded(page, srv.path_of(page.url) or page.url, status, traj["success"])
