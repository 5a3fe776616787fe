"""GUI agent collection: throughput per core and click-verification pass rates.

    python benchmarks/gui.py [--pages 12] [--tasks 8] [--docs /usr/share/doc/sqlite3] [--json]

For generated pages and for a documentation folder (Debian's sqlite3-doc by default) it collects
dense grounding screens and trajectories on one browser (one core's worth of work: Playwright
drives Chromium step by step), then **re-clicks every emitted target in a fresh browser context**
at the stored point and reports the share that hit its element. Prints screenshots/s, grounding
targets/s and trajectory steps/s, the pass rates per source, and the elements rejected by
reason. Peers: SeeClick's web collector keeps every element with text and non-zero size, with no
occlusion or click check -- its rate under the same re-click is shown as "keep all visible-text
elements" (the probe's elements before the occlusion/visibility filters, clicked the same way).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth.gui.browser import DEVICES, Browser, SiteServer, verify_clicks  # noqa: E402
from synth.gui.collect import PageSource, grounding, split_counts  # noqa: E402
from synth.gui.pages import site  # noqa: E402
from synth.gui.trajectories import trajectories  # noqa: E402

NAIVE_JS = r"""
() => { const out = []; let id = 100000;
  document.querySelectorAll('a[href],button,input,select,textarea,[role=button],[onclick]').forEach(el => {
    const r = el.getBoundingClientRect(); const t = (el.innerText || el.value || el.getAttribute('aria-label') || '').trim();
    if (!t || r.width <= 0 || r.height <= 0) return;
    el.setAttribute('data-mm-id', String(id)); out.push([id++, (r.left + r.right) / 2, (r.top + r.bottom) / 2]); });
  return out; }
"""


def _recheck(br: Browser, samples: list[Any], root_of: Any) -> tuple[int, int, int, int]:
    """(hits, emitted) for our targets and (hits, kept) for keep-all-visible-text elements."""
    hit = n = naive_hit = naive_n = 0
    for s in samples:
        d = DEVICES[s.meta["device"]]
        root = root_of(s)
        with SiteServer(root) as srv, br.page(d) as page:
            page.goto(srv.url(s.meta["url"]), wait_until="load")
            page.evaluate(f"() => window.scrollTo(0, {s.meta['scroll_y'] / d.dpr})")
            from synth.gui.browser import probe_elements

            fresh = {tuple(round(v) for v in e["box"]): e["id"] for e in probe_elements(page, d.dpr)["elements"]}
            pts = [(fresh.get(tuple(round(v) for v in a.xyxy), -1), tuple(a.attrs["click"])) for a in s.annotations
                   if a.role == "ui_element" and a.attrs and a.attrs["clickable"]]
            ok = verify_clicks(page, pts, d.dpr, d.mobile)
            hit, n = hit + sum(ok), n + len(ok)
            naive = page.evaluate(NAIVE_JS)
            vw, vh = d.width, d.height
            naive = [(i, (x * d.dpr, y * d.dpr)) for i, x, y in naive if 0 <= x < vw and 0 <= y < vh]
            ok = verify_clicks(page, naive, d.dpr, d.mobile)
            naive_hit, naive_n = naive_hit + sum(ok), naive_n + len(ok)
    return hit, n, naive_hit, naive_n


def bench(name: str, source: PageSource, pages: int, tasks: int, tmp: Path, root_of: Any) -> dict[str, Any]:
    with Browser() as br:
        t = time.perf_counter()
        samples, stats = split_counts(grounding(source, 0, list(range(pages)), tmp=tmp, browser=br))
        t_ground = time.perf_counter() - t
        t = time.perf_counter()
        trajs, tstats = split_counts(trajectories(source, 0, list(range(tasks)), tmp=tmp, browser=br))
        t_traj = time.perf_counter() - t
        hit, n, naive_hit, naive_n = _recheck(br, samples, root_of)
    steps = tstats.get("trajectory_steps", 0)
    rejected = Counter({k.rsplit(".", 1)[1]: v for k, v in stats.items() if k.startswith("elements.rejected.")})
    return {"source": name, "screens": len(samples), "screens_per_s": len(samples) / t_ground,
            "targets_per_s": stats["targets"] / t_ground, "targets": stats["targets"],
            "trajectories": f"{tstats.get('trajectories.succeeded', 0)}/{tasks}",
            "steps_per_s": steps / t_traj if t_traj else 0.0, "steps": steps,
            "pass_rate": hit / max(1, n), "reclicked": n, "naive_pass_rate": naive_hit / max(1, naive_n),
            "naive_kept": naive_n, "rejected": dict(rejected.most_common()),
            "failed": {k.rsplit(".", 1)[1]: v for k, v in tstats.items() if k.startswith("trajectories.failed.")}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=12, help="grounding screens per source")
    ap.add_argument("--tasks", type=int, default=8, help="trajectories per source")
    ap.add_argument("--docs", default="/usr/share/doc/sqlite3", help="a folder of HTML documentation")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench("generated", PageSource(), args.pages, args.tasks, Path(tmp),
                      lambda s: site(**s.meta["site"]).write(Path(tmp) / f"re{s.key}"))]
        if Path(args.docs).is_dir():
            rows.append(bench(Path(args.docs).name + " docs", PageSource(folder=Path(args.docs)), args.pages,
                              args.tasks, Path(tmp), lambda s: Path(args.docs)))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("| source | screens/s | targets/s | trajectory steps/s | trajectories ok | re-click pass rate "
          "(targets) | keep-all-visible-text re-click rate (elements) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['source']} | {r['screens_per_s']:.2f} | {r['targets_per_s']:.1f} | {r['steps_per_s']:.2f} | "
              f"{r['trajectories']} | {100 * r['pass_rate']:.2f}% ({r['reclicked']}) | "
              f"{100 * r['naive_pass_rate']:.1f}% ({r['naive_kept']}) |")
    print()
    print("| source | elements rejected by reason | trajectories failed by reason |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['source']} | {', '.join(f'{k} {v}' for k, v in r['rejected'].items())} | "
              f"{', '.join(f'{k} {v}' for k, v in r['failed'].items()) or '-'} |")


if __name__ == "__main__":
    main()
