"""Pipeline sources: inputs that a pipeline *collects* instead of reading from a version.

```yaml
name: gui-docs
input: /usr/share/doc/sqlite3        # a folder of HTML (served on 127.0.0.1), or http(s) URLs of a running app
source:
  gui: {generator: grounding, platforms: [desktop, web], screens: 200}
  # also: devices: [desktop-1280, mobile-390] (pin the profiles), timeout_s: 15 (per page load / action)
partition_size: 8                    # screens per task
stages:
  - dedupe_image: {max_hamming: 3}   # near-identical screenshots
```

A ``gui`` source opens the input's pages in Chromium (:mod:`synth.gui`): screen *i* of the run
is the *i*-th page of a seeded order on a seeded device, so the output is a pure function of
seed and pages, whatever the runner or the partitioning. Each worker process keeps one browser
for all its tasks (:meth:`synth.gui.browser.Browser.shared`). A page that crashes or times out,
a screen with nothing to refer to and a task that fails are inputs too: each is a row of the
rejects table (stage ``source``) with its reason, never a dead job. The collector's statistics
(screens per platform, verified targets, elements rejected by reason, trajectories) become the
run's ``counts.stats``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from pipelines.stage import SpecError

__all__ = ["SOURCES", "GUI_GENERATORS", "parse_source", "resolve_source", "plan_source", "load_source",
           "FILTERED_REASONS"]

SOURCES = ("gui",)
GUI_GENERATORS = ("grounding", "icons", "trajectories")
GUI_PLATFORMS = ("desktop", "mobile", "web")
_GUI_FIELDS = {"generator", "platforms", "devices", "screens", "timeout_s"}
#: what a source drops as ``filtered`` (the input is fine, it just gives nothing); everything else
#: it drops is ``rejected``
FILTERED_REASONS = ("no_elements", "no_icons", "no_task")


def parse_source(doc: Any, where: str) -> dict[str, Any]:
    """The validated ``source`` field: ``{"gui": {generator, platforms, screens}}``."""
    if not isinstance(doc, dict) or len(doc) != 1:
        raise SpecError(f"{where}: source must be one 'kind: {{options}}' mapping, e.g. "
                        "{gui: {generator: grounding}}; kinds: " + ", ".join(SOURCES))
    (kind, opts), = doc.items()
    if kind not in SOURCES:
        raise SpecError(f"{where}: source {kind!r} is not one of {list(SOURCES)}")
    opts = dict(opts or {})
    unknown = sorted(set(opts) - _GUI_FIELDS)
    if unknown:
        raise SpecError(f"{where}: source.gui: unknown option(s) {unknown}; known: {sorted(_GUI_FIELDS)}")
    gen = opts.get("generator", "grounding")
    if gen not in GUI_GENERATORS:
        raise SpecError(f"{where}: source.gui.generator {gen!r} is not one of {list(GUI_GENERATORS)}")
    plats = opts.get("platforms", ["desktop", "web"])
    plats = [plats] if isinstance(plats, str) else plats
    if not isinstance(plats, list) or not plats or any(p not in GUI_PLATFORMS for p in plats):
        raise SpecError(f"{where}: source.gui.platforms must be a non-empty list of {list(GUI_PLATFORMS)}, got {plats!r}")
    screens = opts.get("screens")
    if screens is not None and (not isinstance(screens, int) or isinstance(screens, bool) or screens < 1):
        raise SpecError(f"{where}: source.gui.screens must be a positive integer (default: one per page), got {screens!r}")
    devices = opts.get("devices") or []
    devices = [devices] if isinstance(devices, str) else devices
    from synth.gui.browser import DEVICES

    if not isinstance(devices, list) or any(d not in DEVICES for d in devices):
        raise SpecError(f"{where}: source.gui.devices must be a list of {sorted(DEVICES)}, got {devices!r}")
    timeout = opts.get("timeout_s", 15)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0.5 <= timeout <= 600:
        raise SpecError(f"{where}: source.gui.timeout_s (per page load and action) must be 0.5-600 s, got {timeout!r}")
    return {"gui": {"generator": gen, "platforms": list(plats), "devices": list(devices), "screens": screens,
                    "timeout_s": float(timeout)}}


def _local_dir(ref: str) -> Path | None:
    u = urlsplit(ref)
    if u.scheme in ("", "file"):
        return Path(unquote(u.path) if u.scheme == "file" else ref).expanduser()
    return None


def resolve_source(source: dict[str, Any], inputs: tuple[str, ...]) -> dict[str, Any]:
    """What the tasks need (folder or URLs, options) and the input's content id (``digest``):
    a folder's files by path and content, or the URL list (a running app is taken as given)."""
    opts = source["gui"]
    dirs = [(_local_dir(r), r) for r in inputs]
    if all(d is None for d, _ in dirs):  # URLs of a running app
        bad = [r for r in inputs if urlsplit(r).scheme not in ("http", "https")]
        if bad:
            raise SpecError(f"source gui: inputs {bad} are neither local folders nor http(s) URLs")
        if opts["generator"] == "trajectories":
            raise SpecError("source gui: trajectories follow a folder's links; give a folder of HTML pages")
        urls = list(inputs)
        digest = hashlib.sha256(json.dumps(urls).encode()).hexdigest()
        return {**opts, "folder": None, "urls": urls, "digest": digest, "pages": len(urls)}
    if len(dirs) != 1:
        raise SpecError("source gui: give one folder of HTML pages, or only http(s) URLs; got "
                        f"{list(inputs)}")
    folder = dirs[0][0]
    assert folder is not None
    if not folder.is_dir():
        raise SpecError(f"source gui: {dirs[0][1]} is not a folder (a gui source reads a local folder of HTML "
                        "pages, or the http(s) URLs of a running app)")
    h = hashlib.sha256()
    pages = 0
    for p in sorted(x for x in folder.rglob("*") if x.is_file()):
        rel = p.relative_to(folder).as_posix()
        pages += rel.endswith(".html")
        h.update(rel.encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    if not pages:
        raise SpecError(f"source gui: no .html files under {folder}")
    return {**opts, "folder": str(folder.resolve()), "urls": [], "digest": h.hexdigest(), "pages": pages}


def plan_source(resolved: dict[str, Any], size: int, seed: int) -> list[tuple[Any, ...]]:
    """Task sources ``("gui", resolved json, start, stop)`` over the run's screen indices."""
    n = resolved["screens"] or resolved["pages"]
    doc = json.dumps({**{k: v for k, v in resolved.items() if k != "digest"}, "seed": seed}, sort_keys=True)
    return [("gui", doc, start, min(n, start + size)) for start in range(0, n, size)]


def load_source(source: tuple[Any, ...]) -> Iterator[Any]:
    """Samples and ``synth.gui.collect.Count`` items of one task, with this process's browser."""
    from synth.gui import collect, trajectories
    from synth.gui.browser import Browser

    _, doc, start, stop = source
    r = json.loads(doc)
    src = collect.PageSource(folder=Path(r["folder"]) if r["folder"] else None, urls=list(r["urls"]),
                             platforms=tuple(r["platforms"]), devices=tuple(r["devices"]))
    fn = {"grounding": collect.grounding, "icons": collect.icons, "trajectories": trajectories.trajectories}[r["generator"]]
    browser = Browser.shared(tuple(collect.hostname(u) for u in src.urls), timeout_s=r["timeout_s"])
    with tempfile.TemporaryDirectory(prefix="mmlake-gui-") as tmp:
        yield from fn(src, int(r["seed"]), list(range(start, stop)), tmp=Path(tmp), browser=browser)
