"""Synthetic datasets as registered versions (``mmlake synth``).

``run_synth(client, lake, ["text", "handwriting", "chart"], "synth-ocr", n=1000, seed=0)``
records a ``synth`` run, deals sample indices ``start .. start+n-1`` round-robin to the
generators that can run here, writes them as one version through the lake writer (shards
first, manifest last) and registers it as made by the run. Every generator is a pure function
of (seed, index) -- the same call writes the same version digest again.

A generator that cannot run on this machine (no handwriting font installed, no Chromium for
HTML tables) is skipped with its reason logged and recorded in the run's counts; when none can
run, the run fails with the reasons.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from datalake.sample import Sample

__all__ = ["GENERATORS", "Generator", "SynthResult", "generate", "run_synth"]

log = logging.getLogger("mmlake.synth")


@dataclass(frozen=True)
class Generator:
    name: str
    kind: str
    help: str
    #: samples for these indices (a batch, so one browser or font cache serves many), given
    #: (seed, indices, augment, options); may also yield ``Count`` statistics
    make: Callable[[int, list[int], bool, Mapping[str, Any]], Iterator[Any]]
    #: why it cannot run here, or None
    unavailable: Callable[[], str | None] = lambda: None


def _text(script: str) -> Generator:
    from synth import text

    def make(seed: int, idx: list[int], augment: bool, options: Mapping[str, Any]) -> Iterator[Sample]:
        for i in idx:
            yield text.text_sample(seed, i, script=script, augment=augment)

    def why() -> str | None:
        if text.find_fonts()[script]:
            return None
        return f"no {script} font is installed ({text.FONT_PACKAGES[script]})"

    name = {"latin": "text", "cjk": "text-cjk", "handwriting": "handwriting"}[script]
    return Generator(name, "ocr", f"rendered {script} text pages with exact line/word polygons", make, why)


def _knowledge(name: str) -> Generator:
    def make(seed: int, idx: list[int], augment: bool, options: Mapping[str, Any]) -> Iterator[Sample]:
        from synth.knowledge import GENERATORS as KNOWLEDGE

        for i in idx:
            yield KNOWLEDGE[name](seed, i)

    def why() -> str | None:
        if name == "chart":
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                return "charts need matplotlib: pip install 'mmlake[ocr]'"
        return None

    helps = {"geometry": "triangles with computed angles, areas, perimeters",
             "chart": "bar/line/pie/scatter charts (matplotlib) with data tables and computed QA",
             "table": "tables drawn with Pillow, QA computed from the cells"}
    return Generator(name, "knowledge", helps[name], make, why)


def _html_table() -> Generator:
    from synth import web

    def make(seed: int, idx: list[int], augment: bool, options: Mapping[str, Any]) -> Iterator[Sample]:
        yield from web.html_table_samples(idx, seed)

    return Generator("html-table", "knowledge", "HTML/CSS tables rendered by headless Chromium, exact cell boxes",
                     make, web.unavailable_reason)


def _gui(name: str) -> Generator:
    """GUI agent data collected in Chromium (``options``: ``pages`` folder, ``urls``, ``platforms``;
    generated pages when neither is given)."""

    def make(seed: int, idx: list[int], augment: bool, options: Mapping[str, Any]) -> Iterator[Any]:
        import tempfile
        from pathlib import Path

        from synth.gui import collect, trajectories

        src = collect.PageSource(folder=Path(options["pages"]) if options.get("pages") else None,
                                 urls=list(options.get("urls") or []),
                                 platforms=tuple(options.get("platforms") or ("desktop", "mobile", "web")))
        fn = {"gui-grounding": collect.grounding, "gui-icons": collect.icons,
              "gui-trajectories": trajectories.trajectories}[name]
        with tempfile.TemporaryDirectory(prefix="mmlake-gui-") as tmp:
            yield from fn(src, seed, idx, tmp=Path(tmp))

    def why() -> str | None:
        from synth.gui.browser import unavailable_reason
        from synth.gui.pages import unavailable_reason as icons_missing

        return unavailable_reason() or icons_missing()

    helps = {"gui-grounding": "GUI screens (desktop/mobile/web) with verified click points and boxes, several "
                              "referring styles",
             "gui-icons": "icon-only controls: crops and in-context boxes with their labels",
             "gui-trajectories": "multi-step tasks executed in Chromium, thoughts and actions, success checked"}
    return Generator(name, "agent", helps[name], make, why)


def _video() -> Generator:
    def make(seed: int, idx: list[int], augment: bool, options: Mapping[str, Any]) -> Iterator[Sample]:
        from synth.video import render_video, video_sample

        for i in idx:
            yield video_sample(render_video(seed, i))

    def why() -> str | None:
        try:
            import av

            av.Codec("libx264", "w")
        except Exception as exc:  # noqa: BLE001 - no PyAV, or a build without the H.264 encoder
            return f"synthetic videos need PyAV with libx264 ({exc})"
        return None

    return Generator("video", "video", "videos of shapes and words that appear, move, change colour and leave, with "
                                       "cuts and fades; exact t0/t1 per object and cut, computed temporal QA",
                     make, why)


GENERATORS: dict[str, Generator] = {g.name: g for g in (
    _text("latin"), _text("cjk"), _text("handwriting"), _knowledge("geometry"), _knowledge("chart"),
    _knowledge("table"), _html_table(), _gui("gui-grounding"), _gui("gui-icons"), _gui("gui-trajectories"),
    _video())}


@dataclass
class SynthResult:
    samples: int = 0
    per_generator: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    #: samples generated but dropped, by reason (``evidence_not_visible``: OCR of the figure did
    #: not find what the answer rests on)
    rejected: dict[str, int] = field(default_factory=dict)
    #: statistics the generators report (GUI: screens per platform, targets, elements rejected by
    #: reason, trajectories attempted / failed by reason)
    stats: dict[str, int] = field(default_factory=dict)
    version: Any = None
    run: Any = None

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "per_generator": self.per_generator, "skipped": self.skipped,
                "rejected": self.rejected, "stats": self.stats,
                "output": self.run.outputs[0] if self.run is not None and self.run.outputs else
                (self.version.ref if self.version is not None else None),
                "run": self.run.id if self.run is not None else None}


def plan(names: Iterable[str], n: int, start: int = 0) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Indices per runnable generator (round-robin over ``start .. start+n-1``) and skip reasons."""
    names = list(dict.fromkeys(names))
    unknown = [x for x in names if x not in GENERATORS]
    if unknown:
        raise ValueError(f"unknown generator(s) {unknown}; known: {', '.join(GENERATORS)}")
    if n < 0 or start < 0:
        raise ValueError("n and start must be >= 0")
    skipped = {}
    for x in names:
        why = GENERATORS[x].unavailable()
        if why:
            skipped[x] = why
            log.warning("synth: skipping %s: %s", x, why)
    ok = [x for x in names if x not in skipped]
    if not ok:
        raise LookupError("no generator can run here: " + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    return {x: [i for i in range(start, start + n) if (i - start) % len(ok) == j] for j, x in enumerate(ok)}, skipped


def generate(names: Iterable[str], n: int, seed: int = 0, *, start: int = 0, augment: bool = True,
             result: SynthResult | None = None, options: Mapping[str, Any] | None = None) -> Iterator[Sample]:
    """The samples, generator by generator; skipped generators are noted in ``result``."""
    return _generate(*plan(names, n, start), seed, augment, result, options or {})


def _generate(batches: dict[str, list[int]], skipped: dict[str, str], seed: int, augment: bool,
              result: SynthResult | None, options: Mapping[str, Any]) -> Iterator[Sample]:
    if result is not None:
        result.skipped.update(skipped)
    for name, idx in batches.items():
        for s in GENERATORS[name].make(seed, idx, augment, options):
            if not isinstance(s, Sample):  # a statistic (synth.gui.collect.Count)
                if result is not None:
                    result.stats[s.name] = result.stats.get(s.name, 0) + s.n
                continue
            if result is not None:
                result.samples += 1
                result.per_generator[name] = result.per_generator.get(name, 0) + 1
            yield s


_ENGINE: Any = None


def _ocr_engine() -> Any:
    global _ENGINE
    if _ENGINE is None:
        from pipelines.ocr.engines import make_engine

        _ENGINE = make_engine("rapidocr", threads=1)
        _ENGINE.load()
    return _ENGINE


def evidence_visible(sample: Sample, engine: Any) -> tuple[bool, list[str]]:
    from synth.knowledge import evidence_visible as check

    return check(sample, engine)


def run_synth(client: Any, lake: Any, names: Iterable[str], dataset: str, n: int, seed: int = 0, *,
              start: int = 0, augment: bool = True, shard_samples: int = 1000,
              progress: bool | None = None, verify_evidence: bool = False,
              options: Mapping[str, Any] | None = None) -> SynthResult:
    """Generate, write and register one version of ``dataset`` as a recorded ``synth`` run.
    ``verify_evidence``: OCR every figure that carries ``meta.truth.evidence`` (charts, tables,
    geometry) and drop, counted, the samples whose answer rests on something not legible."""
    from tqdm import tqdm

    names = list(dict.fromkeys(names))
    batches, skipped = plan(names, n, start)  # unknown names, "nothing can run": fail before a run is recorded
    params = {"generators": names, "n": n, "seed": seed, "start": start, "augment": augment,
              "verify_evidence": verify_evidence, **({"options": dict(options)} if options else {})}
    run = client.start_run("synth", f"synth {dataset}", spec={"type": "synth", "dataset": dataset, **params},
                           parameters=params)
    result = SynthResult()
    try:
        created = {"by": "mmlake synth", "run_id": run.id, **params}
        with lake.writer(dataset, shard_samples=shard_samples, created=created) as w:
            for s in tqdm(_generate(batches, skipped, seed, augment, result, options or {}), total=n,
                          unit="sample", desc=f"synth {dataset}", disable=None if progress is None else not progress):
                if verify_evidence and "evidence" in (s.meta.get("truth") or {}):
                    ok, _missing = evidence_visible(s, _ocr_engine())
                    if not ok:
                        result.rejected["evidence_not_visible"] = result.rejected.get("evidence_not_visible", 0) + 1
                        result.samples -= 1
                        continue
                w.add(s)
            result.version = w.commit()
    except Exception as exc:
        client.finish_run(run.id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    counts = {"inputs": n, "kept": result.samples, "generated": dict(result.per_generator),
              "skipped_generators": dict(result.skipped), "rejected": dict(result.rejected),
              **({"stats": dict(result.stats)} if result.stats else {})}
    result.run = client.finish_run(run.id, "succeeded", counts=counts, outputs=[result.version])
    return result
