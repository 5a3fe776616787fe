"""The browser side of GUI collection: a local HTTP server for a pages folder, device profiles,
one Chromium per process reused across pages, and the DOM probe that finds elements and proves
they can be clicked.

Coordinates: the probe works in CSS pixels of the viewport; everything it returns to callers is
in **screenshot pixels** (CSS x device pixel ratio), the pixels of the PNG that becomes the
sample's media. ``Probe.css(xy)`` goes back for the mouse.
"""

from __future__ import annotations

import atexit
import functools
import http.server
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEVICES", "Device", "SiteServer", "Browser", "ELEMENTS_JS", "REJECT_REASONS", "probe_elements",
           "verify_clicks", "unavailable_reason"]


@dataclass(frozen=True)
class Device:
    name: str
    platform: str  # desktop | mobile | web
    width: int  # CSS pixels
    height: int
    dpr: float
    mobile: bool = False

    def context_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"viewport": {"width": self.width, "height": self.height},
                                "device_scale_factor": self.dpr, "reduced_motion": "reduce"}
        if self.mobile:
            args.update(is_mobile=True, has_touch=True, user_agent=(
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/120.0 Mobile Safari/537.36"))
        return args


DEVICES: dict[str, Device] = {d.name: d for d in (
    Device("desktop-1920", "desktop", 1920, 1080, 1.0), Device("desktop-1440", "desktop", 1440, 900, 1.0),
    Device("desktop-1280", "desktop", 1280, 800, 1.0), Device("desktop-1440@2x", "desktop", 1440, 900, 2.0),
    Device("desktop-1280@2x", "desktop", 1280, 800, 2.0),
    Device("mobile-390", "mobile", 390, 844, 3.0, mobile=True), Device("mobile-412", "mobile", 412, 915, 3.0, mobile=True),
    Device("web-1280", "web", 1280, 800, 1.0), Device("web-1366", "web", 1366, 768, 1.0),
)}
#: why an element is not a target
REJECT_REASONS = ("offscreen", "invisible", "too_small", "disabled", "occluded", "wrapped", "no_name",
                  "click_missed")


def unavailable_reason() -> str | None:
    from synth.web import unavailable_reason as why

    return why()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # noqa: D102 - no access log on stderr
        pass


class SiteServer:
    """Serves ``root`` on 127.0.0.1 (a free port) in a thread, so links, CSS and scripts work as
    on a site; ``url("/a/b.html")`` is the address of a file."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise FileNotFoundError(f"pages folder {self.root} does not exist")
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + "/" + path.lstrip("/")

    def path_of(self, url: str) -> str | None:
        """The site path of ``url`` (no query or fragment), or None if it is elsewhere."""
        if not url.startswith(self.base + "/"):
            return None
        return "/" + url[len(self.base) + 1:].split("#")[0].split("?")[0]

    def __enter__(self) -> SiteServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


_DRIVER: list[Any] = []  # [playwright, users]: one driver per process (Playwright allows one per thread)


def _driver(delta: int) -> Any:
    from playwright.sync_api import sync_playwright

    if delta > 0:
        if not _DRIVER:
            _DRIVER[:] = [sync_playwright().start(), 0]
        _DRIVER[1] += 1
        return _DRIVER[0]
    _DRIVER[1] -= 1
    if _DRIVER[1] == 0:
        pw = _DRIVER[0]
        _DRIVER.clear()
        pw.stop()
    return None


_SHARED: dict[tuple[int, tuple[str, ...]], Browser] = {}  # (pid, hosts): a forked child makes its own


def close_shared() -> None:
    """Close this process's shared browsers (a run driven in-process closes them when it ends,
    so no Playwright driver outlives it in the caller's thread)."""
    for key, br in list(_SHARED.items()):
        if key[0] == os.getpid():
            try:
                br.close()
            except Exception:  # noqa: BLE001 - exiting anyway
                pass
    _SHARED.clear()


class Browser:
    """One Chromium for many pages (``page(device)`` opens a fresh context per page). Host names
    other than 127.0.0.1, localhost and ``hosts`` do not resolve: a page cannot pull anything from
    elsewhere, and the collector opens only the addresses it is given."""

    def __init__(self, hosts: tuple[str, ...] = (), timeout_s: float = 15.0) -> None:
        self.hosts = tuple(hosts)
        self.timeout_ms = timeout_s * 1000
        why = unavailable_reason()
        if why:
            raise RuntimeError(why)
        self._pw = _driver(+1)
        self.browser = self._launch()

    @contextmanager
    def page(self, device: Device) -> Iterator[Any]:
        """A page in a fresh context for ``device``."""
        ctx = self.browser.new_context(**device.context_args())
        try:
            page = ctx.new_page()
            page.set_default_timeout(self.timeout_ms)
            yield page
        finally:
            ctx.close()

    def restart(self) -> None:
        """After a crash: a new browser process."""
        try:
            self.browser.close()
        except Exception:  # noqa: BLE001 - it is already gone
            pass
        self.browser = self._launch()

    def _launch(self) -> Any:
        from synth.web import CHROMIUM_ARGS, chromium_path

        # no smooth scrolling: a scroll lands at once, the same on replay
        rules = "MAP * ~NOTFOUND, " + ", ".join(f"EXCLUDE {h}" for h in ("127.0.0.1", "localhost", *self.hosts))
        return self._pw.chromium.launch(executable_path=chromium_path(),
                                        args=[*CHROMIUM_ARGS, "--disable-smooth-scrolling",
                                              f"--host-resolver-rules={rules}"])

    def close(self) -> None:
        try:
            self.browser.close()
        finally:
            _driver(-1)

    def __enter__(self) -> Browser:
        return self

    @classmethod
    def shared(cls, hosts: tuple[str, ...] = (), timeout_s: float = 15.0) -> Browser:
        """This process's browser for ``hosts`` (a pipeline worker keeps one across its tasks and
        pages; it is closed when the process exits)."""
        key = (os.getpid(), tuple(sorted(hosts)))
        br = _SHARED.get(key)
        if br is None:
            if not _SHARED:
                atexit.register(close_shared)
            br = _SHARED[key] = cls(hosts)
        br.timeout_ms = timeout_s * 1000
        return br

    def __exit__(self, *exc: Any) -> None:
        self.close()


ELEMENTS_JS = r"""
(opts) => {
  const minSize = opts.minSize;
  // the visual viewport (what the screenshot shows, where input lands) can be panned inside the
  // layout viewport (a page wider than a phone): boxes go out in visual-viewport pixels
  const vv = window.visualViewport, ox = vv ? vv.offsetLeft : 0, oy = vv ? vv.offsetTop : 0,
        sc = vv ? vv.scale : 1, vw = vv ? ox + vv.width : innerWidth, vh = vv ? oy + vv.height : innerHeight;
  const V = (x, y) => [(x - ox) * sc, (y - oy) * sc];
  const SEL = 'a[href],button,input:not([type=hidden]),select,textarea,summary,[role=button],[role=link],' +
    '[role=tab],[role=menuitem],[role=checkbox],[role=radio],[role=switch],[role=option],[onclick]';
  const TEXT = 'h1,h2,h3,h4,h5,h6';
  const implicit = el => {
    const r = el.getAttribute('role'); if (r) return r;
    const t = el.tagName.toLowerCase();
    if (t === 'a') return 'link';
    if (t === 'button' || t === 'summary') return 'button';
    if (t === 'select') return 'combobox';
    if (t === 'textarea') return 'textbox';
    if (t === 'input') { const ty = (el.type || 'text').toLowerCase();
      if (['button', 'submit', 'reset', 'image'].includes(ty)) return 'button';
      if (ty === 'checkbox' || ty === 'radio') return ty;
      if (ty === 'range') return 'slider';
      if (ty === 'search') return 'searchbox';
      return 'textbox'; }
    if (/^h[1-6]$/.test(t)) return 'heading';
    return 'generic';
  };
  const clean = s => (s || '').replace(/\s+/g, ' ').trim();
  const name = el => {
    let v = clean(el.getAttribute('aria-label')); if (v) return v;
    const lb = el.getAttribute('aria-labelledby');
    if (lb) { v = clean(lb.split(/\s+/).map(i => document.getElementById(i)).filter(Boolean)
      .map(e => e.innerText).join(' ')); if (v) return v; }
    if (el.labels && el.labels.length) { v = clean(Array.from(el.labels).map(l => { const c = l.cloneNode(true);
      c.querySelectorAll('select,textarea,input').forEach(x => x.remove()); return c.textContent; }).join(' '));
      if (v) return v; }
    v = clean(el.innerText); if (v) return v;
    const img = el.querySelector && el.querySelector('img[alt]'); if (img && clean(img.alt)) return clean(img.alt);
    v = clean(el.getAttribute('title')); if (v) return v;
    if (el.placeholder) return clean(el.placeholder);
    if (el.tagName === 'INPUT' && ['submit', 'button', 'reset'].includes(el.type)) return clean(el.value);
    return '';
  };
  const interactiveAncestor = el => { for (let e = el.parentElement; e; e = e.parentElement)
    if (e.matches(SEL)) return e; return null; };
  const opacity = el => { let o = 1; for (let e = el; e && e.nodeType === 1; e = e.parentElement)
    o *= parseFloat(getComputedStyle(e).opacity); return o; };
  const hits = (el, x, y) => { const h = document.elementFromPoint(x, y); return !!h && (h === el || el.contains(h)); };
  const out = [], rejected = {};
  const reject = r => { rejected[r] = (rejected[r] || 0) + 1; };
  let id = 0;
  const consider = (el, clickable) => {
    if (clickable && interactiveAncestor(el)) return;  // the ancestor is the target
    const rects = Array.from(el.getClientRects()).filter(r => r.width > 0 && r.height > 0);
    if (!rects.length) { reject('invisible'); return; }
    const cs = getComputedStyle(el);
    if (cs.visibility !== 'visible' || opacity(el) < 0.1) { reject('invisible'); return; }
    const r = el.getBoundingClientRect();
    if (r.right <= ox || r.bottom <= oy || r.left >= vw || r.top >= vh) { reject('offscreen'); return; }
    if (r.left < ox || r.top < oy || r.right > vw || r.bottom > vh) { reject('offscreen'); return; }
    if (r.width * sc < minSize || r.height * sc < minSize) { reject('too_small'); return; }
    if (clickable && (el.disabled || el.getAttribute('aria-disabled') === 'true' || el.closest('fieldset[disabled]'))) {
      reject('disabled'); return; }
    const lines = new Set(rects.map(q => Math.round(q.top)));
    if (lines.size > 1 && cs.display.startsWith('inline') && !cs.display.includes('block')) { reject('wrapped'); return; }
    const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
    // the click point, four inner points and the middles of the four edges (inside rounded
    // corners too): any of them covered by something else -> occluded
    const inner = [[cx, cy], [r.left + r.width * .2, r.top + r.height * .25], [r.left + r.width * .8, r.top + r.height * .25],
                   [r.left + r.width * .2, r.top + r.height * .75], [r.left + r.width * .8, r.top + r.height * .75],
                   [cx, r.top + r.height * .06], [cx, r.bottom - r.height * .06], [r.left + r.width * .06, cy],
                   [r.right - r.width * .06, cy]];
    if (!inner.every(([x, y]) => hits(el, x, y))) { reject('occluded'); return; }
    const nm = name(el);
    if (!nm) { reject('no_name'); return; }
    const text = clean(el.innerText).slice(0, 200);
    const group = el.closest('[aria-label][role=toolbar],nav[aria-label],[role=menu],[role=menubar],[role=tablist],form,' +
                             'table,header,[role=dialog]');
    el.setAttribute('data-mm-id', String(id));
    out.push({id: id++, tag: el.tagName.toLowerCase(), role: implicit(el), name: nm.slice(0, 200), text,
              type: el.tagName === 'INPUT' ? (el.type || 'text') : null, clickable,
              icon: clickable && !text && !!el.querySelector('svg,img'),
              box: [...V(r.left, r.top), ...V(r.right, r.bottom)], point: V(cx, cy),
              href: el.tagName === 'A' ? el.href : null, fn: el.getAttribute('data-fn'),
              group: group ? (group.getAttribute('aria-label') || group.getAttribute('role') || group.tagName.toLowerCase()) : null});
  };
  document.querySelectorAll('[data-mm-id]').forEach(e => e.removeAttribute('data-mm-id'));
  document.querySelectorAll(SEL).forEach(el => consider(el, true));
  document.querySelectorAll(TEXT).forEach(el => { if (!el.closest(SEL)) consider(el, false); });
  return {elements: out, rejected, title: document.title, url: location.href, scrollY: scrollY,
          scrollHeight: document.documentElement.scrollHeight, vw, vh};
}
"""

_EVENTS = "['mousedown', 'mouseup', 'pointerup', 'auxclick', 'contextmenu', 'dblclick', 'click']"
_LISTEN_JS = r"""
() => { window.__mmHits = [];
  window.__mmStop = e => { if (e.type === 'click') { const t = e.target.closest ? e.target.closest('[data-mm-id]') : null;
    window.__mmHits.push(t ? t.getAttribute('data-mm-id') : null); }
    e.preventDefault(); e.stopImmediatePropagation(); };
  for (const ev of EVENTS) window.addEventListener(ev, window.__mmStop, true); }
""".replace("EVENTS", _EVENTS)
_REMOVE_JS = r"""
() => { for (const ev of EVENTS) window.removeEventListener(ev, window.__mmStop, true); }
""".replace("EVENTS", _EVENTS)



def probe_elements(page: Any, dpr: float, min_size: float = 8.0) -> dict[str, Any]:
    """Elements of the current state with boxes and click points in screenshot pixels (the probe
    tags each with ``data-mm-id``), and rejects by reason."""
    res = page.evaluate(ELEMENTS_JS, {"minSize": min_size})
    for el in res["elements"]:
        el["box"] = [round(v * dpr, 1) for v in el["box"]]
        el["point"] = [round(v * dpr, 1) for v in el["point"]]
    return res


def verify_clicks(page: Any, points: list[tuple[int, tuple[float, float]]], dpr: float, touch: bool) -> list[bool]:
    """Click (or tap) each ``(element id, screenshot point)`` for real and say whether the event
    reached that element (a capture-phase listener records the target and cancels the event, so
    the page state does not change between clicks). Needs the ``data-mm-id`` tags of the probe."""
    page.evaluate(_LISTEN_JS)
    try:
        for _eid, (x, y) in points:  # every click (or tap) dispatches one click event: one hit each
            if touch:
                page.touchscreen.tap(x / dpr, y / dpr)
            else:
                page.mouse.click(x / dpr, y / dpr)
                page.mouse.move(0, 0)
        hits = page.evaluate("() => window.__mmHits")
    finally:
        page.evaluate(_REMOVE_JS)
    if len(hits) != len(points):  # a click that dispatched no event, or more than one: check one by one
        return [verify_clicks(page, [p], dpr, touch)[0] for p in points] if len(points) > 1 else [False]
    ok = [h == str(eid) for h, (eid, _) in zip(hits, points, strict=True)]
    return ok
