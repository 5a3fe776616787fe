"""``LoaderConfig``, ``SourceSpec`` and ``build_loader``: the resumable training loader.

Data flow for rank ``r`` of ``R``: the plan (``loader.plan``) lists the rank's own elements
-- its lanes, turn by turn, O(1) per element, in the main process only -- and hands them in
chunks to the workers (PyTorch's DataLoader gives chunks out round-robin and returns them in
order); a worker reads, decodes, augments and tokenizes them (``loader.render``); the main
process packs them best-fit into rows (``loader.packing``) and yields batches. The state covers
what the trainer has *received*: each owned lane's next position, the rest of the rank's
prefix, and the ids in the packer -- nothing that depends on ``W`` or on what the workers
prefetched, and nothing that grows with steps or resizes.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datalake.sample import SampleError
from datalake.shards import ShardError, decode_members
from datalake.store import StoreError
from loader.augment import resolve_policy
from loader.mixing import Schedule
from loader.packing import BestFitPacker, collate_rows
from loader.plan import RankPlan, Stream, decode_cursors, encode_cursors, lanes_of, merge_states
from loader.render import Processed, SampleProcessor, SkipSample
from loader.source import IndexCache, ShardCache, Source
from loader.tokenizer import load_tokenizer

__all__ = ["SourceSpec", "LoaderConfig", "Loader", "build_loader", "STATE_FORMAT"]

STATE_FORMAT = "mmlake-loader-state"
_GiB = 1 << 30


@dataclass
class SourceSpec:
    """One source: a registry reference (``name``, ``name@latest``, ``name@<version>``) or a
    manifest URI (``file://...``, ``s3://...``), its mixing weight, and an optional cap on the
    share of ``meta.synthetic`` samples drawn from it."""

    dataset: str
    weight: float = 1.0
    max_synthetic: float | None = None
    #: a route by video length: this source keeps samples whose video lasts ``[min_video_s,
    #: max_video_s)`` and skips the others (counted as ``video route``), so one dataset can feed
    #: short videos to the main stage and long ones to the long-context stage (larger seq_len);
    #: routes ``max_video_s: X`` and ``min_video_s: X`` partition a dataset exactly
    min_video_s: float | None = None
    max_video_s: float | None = None

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"source {self.dataset}: weight must be >= 0, got {self.weight}")
        if (self.min_video_s is not None and self.max_video_s is not None
                and not 0 <= self.min_video_s < self.max_video_s):
            raise ValueError(f"source {self.dataset}: need 0 <= min_video_s < max_video_s")
        if self.max_synthetic is not None and not 0 <= self.max_synthetic <= 1:
            raise ValueError(f"source {self.dataset}: max_synthetic must be in [0, 1], got {self.max_synthetic}")


@dataclass
class LoaderConfig:
    """Everything the loader does; see the README's loader section for each field."""

    sources: list[SourceSpec]
    seed: int = 0
    seq_len: int = 8192
    batch_size: int = 4
    num_workers: int = 2
    rank: int = 0
    world_size: int = 1
    tokenizer: str | None = None
    augment: str | dict[str, Any] | None = "default"
    #: weights over the global sample position: ``[(position, [w_source0, w_source1, ...]), ...]``
    #: (piecewise linear); ``None``: the sources' fixed weights
    schedule: list[tuple[int, list[float]]] | None = None
    max_pixels: int | None = None
    coords: str = "norm1000"
    overlong: str = "truncate"
    #: video samples: frames per second of video fed (uniformly over the duration), at most
    #: ``video_max_frames`` frames, each within ``video_max_pixels`` (None: ``max_pixels``)
    video_fps: float = 1.0
    video_max_frames: int = 16
    video_max_pixels: int | None = None
    pack_buffer: int = 64
    prefetch: int = 2
    #: consecutive elements a worker prepares and sends as one message
    worker_chunk: int = 8
    #: canonical lanes of the stream (fixed at the first run: the largest world size it can
    #: resume on; set it for elastic runs, e.g. 4096). None: the first run's world size
    lanes: int | None = None
    #: positions a rank takes from one lane before the next; the schedule's resolution is about
    #: lanes x turn global positions
    turn: int = 64
    #: worker start method: None (the platform's default), "fork", "spawn" or "forkserver"
    mp_context: str | None = None
    registry: str | None = None
    #: node-local disk cache of whole remote shards (None: $MMLAKE_HOME/cache/shards for remote
    #: sources; "off": none)
    cache_dir: str | None = None
    cache_bytes: int = 20 * _GiB
    #: per-worker in-memory LRU of whole remote shards, used when the disk cache is off
    mem_cache_bytes: int = 512 << 20
    requests_per_s: float | None = None
    #: remote sources with a disk cache: fetch the shards of the rank's next ``readahead``
    #: elements into the cache in a background thread while the current ones are consumed (0: off)
    readahead: int = 2048
    max_consecutive_failures: int = 16
    step_log: str | None = None
    metrics_port: int | None = None
    progress: bool = False
    progress_every: float = 10.0

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError("LoaderConfig needs at least one SourceSpec")
        self.sources = [s if isinstance(s, SourceSpec) else SourceSpec(**s) for s in self.sources]
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in [0, world_size={self.world_size})")
        if self.seq_len < 16 or self.batch_size < 1 or self.num_workers < 0:
            raise ValueError("seq_len must be >= 16, batch_size >= 1 and num_workers >= 0")

    def weights_schedule(self) -> Schedule:
        if self.schedule is not None:
            sched = Schedule.from_points(self.schedule)
            if len(sched.points[0][1]) != len(self.sources):
                raise ValueError(f"the schedule gives {len(sched.points[0][1])} weights per point for "
                                 f"{len(self.sources)} sources")
            return sched
        return Schedule.from_points([(0, [s.weight for s in self.sources])])


def _identity(x: Any) -> Any:
    return x


@dataclass
class _Result:
    """What a worker returns for one element: a processed sample, or why there is none."""

    sid: tuple[int, int]
    item: Processed | None = None
    skip: str | None = None
    where: str = ""
    key: str = ""
    synthetic: bool = False
    counters: dict[str, int] = field(default_factory=dict)


class _Work:
    """The per-element work, run in workers (or in the main process with 0 workers)."""

    def __init__(self, sources: list[Source], processor: SampleProcessor, seed: int,
                 routes: Sequence[tuple[float | None, float | None]] = ()) -> None:
        self.sources, self.processor, self.seed = sources, processor, seed
        self.routes = list(routes) or [(None, None)] * len(sources)

    def _routed_away(self, s: int, sample: Any) -> bool:
        lo, hi = self.routes[s]
        if lo is None and hi is None:
            return False
        d = next((m.duration_s for m in sample.media if m.mime.startswith("video/") and m.duration_s), None)
        return d is not None and ((lo is not None and d < lo) or (hi is not None and d >= hi))

    def __call__(self, sid: tuple[int, int]) -> _Result:
        s, k = sid
        src = self.sources[s]
        epoch, i = src.draw(self.seed, k)
        j, _ = src.locate(i)
        try:
            loc = src.read(i)
        except (StoreError, OSError) as exc:
            raise RuntimeError(f"loader: cannot read {src.ref} shard {src.manifest.shards[j].path} sample #{i}: "
                               f"{exc}") from exc
        except ShardError as exc:  # the sample's tar headers are broken: skip it like a bad record
            return _Result(sid, skip=f"corrupt sample: {exc}", where=src.where(j), key=f"#{i}")
        res = _Result(sid, where=loc.where, key=loc.key)
        try:
            sample = decode_members(loc.members, loc.key, loc.where)
            res.synthetic = bool(sample.meta.get("synthetic"))
            if res.synthetic and not src.keeps_synthetic(self.seed, loc.key):
                res.skip = "synthetic cap"
            elif self._routed_away(s, sample):
                res.skip = "video route"
            else:
                res.item = self.processor.process(sample, dataset=src.ref, epoch=epoch)
        except SkipSample as exc:
            res.skip = exc.reason
        except (ShardError, SampleError, ValueError) as exc:
            res.skip = f"corrupt sample: {exc}"
        stats = src.store.stats
        cache = src.cache
        res.counters = {"requests": stats.requests, "hits": (cache.hits if cache else 0) + src.mem_hits,
                        "misses": (cache.misses if cache else 0) + src.mem_misses}
        return res


def _rank_items(stream: Stream, cursors: dict[int, int], prefix: Sequence[tuple[int, int]],
                pending: Sequence[tuple[int, int]]) -> Iterator[tuple[tuple[int, int], int | None, int]]:
    """The rank's elements from a state: the packer's pending ids (lane -1), then the plan's
    items (prefix items with lane ``None``, lane items with the lane's next position)."""
    for sid in pending:
        yield (int(sid[0]), int(sid[1])), -1, 0
    yield from RankPlan(stream, cursors, prefix)


class _ReadAhead:
    """Fetches the shards of the rank's coming elements into the node's disk cache, in plan
    order and at most ``window`` elements ahead of what the trainer consumed, so that workers
    find the next shard on local disk when they get to it (one thread, in the main process;
    a failure here is left for the worker that reads the sample to report)."""

    def __init__(self, sources: list[Source], seed: int, items: Iterator[tuple[tuple[int, int], int | None, int]],
                 window: int) -> None:
        import threading

        from loader.order import SourceOrder

        self.sources, self.items, self.window = sources, items, int(window)
        self.orders = [SourceOrder(seed, s.digest, s.sizes) for s in sources]  # not shared with the workers
        self.consumed = 0
        self.fetched: list[tuple[int, int]] = []  # (source, shard) in the order fetched
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mmlake-readahead", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        done: set[tuple[int, int]] = set()
        for n, ((s, k), _, _) in enumerate(self.items):
            while n - self.consumed > self.window:
                if self._stop.wait(0.02):
                    return
            if self._stop.is_set():
                return
            src = self.sources[s]
            j, _ = src.locate(self.orders[s].draw(k)[1])
            if (s, j) in done:
                continue
            done.add((s, j))
            if len(done) > 4096:
                done.clear()
            try:
                src.cache.get(src.store, src.manifest.shards[j], src.where(j))  # type: ignore[union-attr]
                self.fetched.append((s, j))
            except Exception:  # noqa: BLE001 -- the reading worker reports it, with dataset, shard and key
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _Chunks:
    """The sampler of the worker DataLoader: the rank's items in chunks of ``chunk``, planned
    here in the main process once (workers only do the per-sample work)."""

    def __init__(self, items: Iterator[tuple[tuple[int, int], int | None, int]], chunk: int) -> None:
        self.items, self.chunk = items, max(1, int(chunk))

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        block: list[tuple[int, int]] = []
        for sid, _, _ in self.items:
            block.append(sid)
            if len(block) == self.chunk:
                yield block
                block = []


class Loader:
    """An iterable of packed batches with ``state_dict()`` / ``load_state_dict()``."""

    def __init__(self, cfg: LoaderConfig) -> None:
        self.cfg = cfg
        self.tokenizer = load_tokenizer(cfg.tokenizer)
        self.sources = [Source.open(i, s.dataset, registry=cfg.registry, max_synthetic=s.max_synthetic)
                        for i, s in enumerate(cfg.sources)]
        self.schedule = self._compensated(cfg.weights_schedule())
        self.processor = SampleProcessor(self.tokenizer, seed=cfg.seed, policy=cfg.augment, seq_len=cfg.seq_len,
                                         max_pixels=cfg.max_pixels, coords=cfg.coords, overlong=cfg.overlong,
                                         video_fps=cfg.video_fps, video_max_frames=cfg.video_max_frames,
                                         video_max_pixels=cfg.video_max_pixels)
        cache = None
        if cfg.cache_dir != "off" and (cfg.cache_dir is not None or any(s.uri.startswith("s3://")
                                                                         for s in self.sources)):
            from mmlake.settings import load_settings

            root = cfg.cache_dir or str(Path(load_settings().home) / "cache" / "shards")
            cache = ShardCache(root, cfg.cache_bytes)
        from mmlake.settings import load_settings

        node_dir = Path(cfg.cache_dir) if cfg.cache_dir not in (None, "off") else Path(load_settings().home) / "cache"
        index_cache = IndexCache(None if cfg.cache_dir == "off" else node_dir / "index")
        # one request budget for the node: every rank and worker using this node directory shares it
        rate_file = str(node_dir / "requests.bucket") if cfg.requests_per_s is not None else None
        for s in self.sources:
            s.configure(cache, cfg.requests_per_s, cfg.mem_cache_bytes, index_cache, rate_file)
        blocks = [max(1, round(s.n / max(1, len(s.sizes)))) for s in self.sources]  # mean shard size
        self.stream = Stream.fresh(self.schedule, blocks, lanes=cfg.lanes or cfg.world_size, turn=cfg.turn)
        self._cursors = {lane: 0 for lane in lanes_of(cfg.rank, cfg.world_size, self.stream.lanes)}
        self._prefix: list[tuple[int, int]] = []
        self._consumed = 0
        self._pending: list[tuple[int, int]] = []
        self.step = 0
        self.readahead: _ReadAhead | None = None
        self.counts: dict[str, Any] = {"samples": 0, "tokens": 0, "loss_tokens": 0, "slots": 0, "truncated": 0,
                                       "skipped": Counter(), "by_source": [0] * len(self.sources),
                                       "synthetic": [0] * len(self.sources)}
        self._worker_counters: dict[tuple[int, int], dict[str, int]] = {}
        self._t0 = time.monotonic()
        self._log_rows: list[dict[str, Any]] = []
        self._last_progress = 0.0
        if cfg.metrics_port is not None:
            from loader.metrics import serve_metrics

            serve_metrics(self, cfg.metrics_port)

    def _compensated(self, sched: Schedule) -> Schedule:
        """Mixer weights that deliver the configured ones despite synthetic caps: a capped
        source loses the draws it skips (share ``1 - r`` of its slots), so its slot weight is
        divided by ``r``, the expected share of its draws that survive the cap."""
        r = [(1 - s.synthetic_frac) + s.synthetic_frac * s.keep_synthetic for s in self.sources]
        if all(x == 1.0 for x in r):
            return sched
        return Schedule.from_points([(p, [w / x if x > 0 else w for w, x in zip(ws, r, strict=True)])
                                     for p, ws in sched.points])

    # -- identity -----------------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any]:
        """What must match for a state to continue this loader deterministically."""
        c = self.cfg
        return {
            "seed": c.seed,
            "sources": [s.ref for s in self.sources],
            "digests": [s.digest for s in self.sources],
            "max_synthetic": [s.max_synthetic for s in c.sources],
            "video_routes": [[s.min_video_s, s.max_video_s] for s in c.sources],
            "seq_len": c.seq_len,
            "tokenizer": self.tokenizer.digest,
            "augment": json.loads(json.dumps(resolve_policy(c.augment), default=list)),
            "max_pixels": c.max_pixels,
            "coords": c.coords,
            "overlong": c.overlong,
            "video": [c.video_fps, c.video_max_frames, c.video_max_pixels],
            "pack_buffer": c.pack_buffer,
        }

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What the trainer has received so far; small and JSON-serialisable."""
        self.flush_step_log()
        return {
            "format": STATE_FORMAT, "version": 2, "fingerprint": self.fingerprint(),
            "rank": self.cfg.rank, "world_size": self.cfg.world_size,
            "stream": self.stream.to_json(), "consumed": self._consumed, "cursors": encode_cursors(self._cursors),
            "prefix": [list(p) for p in self._prefix], "pending": [list(p) for p in self._pending], "step": self.step,
            "counts": {**self.counts, "skipped": dict(self.counts["skipped"])},
        }

    def load_state_dict(self, state: dict[str, Any] | Sequence[dict[str, Any]]) -> None:
        """Resume from this rank's state (identical continuation), or from the list of every
        old rank's state when the world size or the weights changed (exactly once)."""
        states = [state] if isinstance(state, dict) else list(state)
        if not states:
            raise ValueError("load_state_dict got an empty list of states")
        for s in states:
            self._check(s)
        old_world = int(states[0]["world_size"])
        old = Stream.from_json(states[0]["stream"])
        if self.cfg.lanes is not None and self.cfg.lanes != old.lanes:
            raise ValueError(f"the state's stream has {old.lanes} lanes, the config asks for {self.cfg.lanes}: lanes "
                             f"are fixed at the first run (leave `lanes` unset to take the state's)")
        if old.turn != self.cfg.turn:
            raise ValueError(f"the state's stream takes turns of {old.turn} positions, the config {self.cfg.turn}")
        same_weights = old.schedule == self.schedule
        if old_world == self.cfg.world_size and same_weights:
            mine = [s for s in states if int(s["rank"]) == self.cfg.rank]
            if not mine:
                raise ValueError(f"no state for rank {self.cfg.rank} among ranks {[s['rank'] for s in states]}")
            s = mine[0]
            self.stream = old
            self._cursors = decode_cursors(s["cursors"])
            self._prefix = [(int(a), int(b)) for a, b in s["prefix"]]
            self._consumed = int(s["consumed"])
            self._pending = [(int(a), int(b)) for a, b in s["pending"]]
            self.step = int(s["step"])
            self._restore_counts(s["counts"])
            return
        if len(states) == 1 and old_world > 1:
            raise ValueError(f"the state is rank {states[0]['rank']} of {old_world}; to change the world size "
                             f"(or the weights with several ranks) pass the list of all {old_world} ranks' states")
        stream, cursors, prefix = merge_states(states, schedule=self.schedule)
        mine = lanes_of(self.cfg.rank, self.cfg.world_size, stream.lanes)
        self.stream = stream
        self._cursors = {lane: cursors[lane] for lane in mine}
        self._prefix = prefix[self.cfg.rank::self.cfg.world_size]
        self._consumed, self._pending = 0, []
        self.step = max(int(s["step"]) for s in states)

    def _restore_counts(self, counts: dict[str, Any]) -> None:
        self.counts = {**counts, "skipped": Counter(counts.get("skipped", {}))}

    def _check(self, s: dict[str, Any]) -> None:
        if not isinstance(s, dict) or s.get("format") != STATE_FORMAT:
            raise ValueError("not an mmlake loader state (expected the dict returned by Loader.state_dict())")
        if s.get("version") != 2:
            raise ValueError(f"loader state version {s.get('version')} is not supported (expected 2: states "
                             f"of version 1 planned the stream element by element and cannot be continued)")
        mine, theirs = self.fingerprint(), s["fingerprint"]
        diffs = [f"{k}: state has {theirs.get(k)!r}, config has {mine[k]!r}" for k in mine if theirs.get(k) != mine[k]]
        if diffs:
            raise ValueError("the loader state does not match this config (resuming would not be deterministic): "
                             + "; ".join(diffs))

    # -- iteration --------------------------------------------------------------------------------
    def _results(self, work: _Work) -> Iterator[_Result]:
        cfg = self.cfg
        items = _rank_items(self.stream, self._cursors, self._prefix, list(self._pending))
        if cfg.num_workers == 0:
            for sid, _, _ in items:
                yield work(sid)
            return
        import torch.utils.data as tud

        from loader._torchds import WorkDataset

        dl = tud.DataLoader(WorkDataset(work), batch_sampler=_Chunks(items, cfg.worker_chunk),
                            num_workers=cfg.num_workers, prefetch_factor=cfg.prefetch, collate_fn=_identity,
                            persistent_workers=False, multiprocessing_context=cfg.mp_context)
        for block in dl:
            yield from block

    def __iter__(self) -> Iterator[dict[str, Any]]:
        cfg = self.cfg
        work = _Work(self.sources, self.processor, cfg.seed, [(x.min_video_s, x.max_video_s) for x in cfg.sources])
        results = self._results(work)
        plan = _rank_items(self.stream, self._cursors, self._prefix, list(self._pending))
        ahead = None
        if cfg.readahead > 0 and any(s.cache is not None and s.remote for s in self.sources):
            ahead = _ReadAhead(self.sources, cfg.seed, _rank_items(self.stream, self._cursors, self._prefix,
                                                                    list(self._pending)), cfg.readahead)
        self.readahead = ahead
        cursors, prefix0 = dict(self._cursors), list(self._prefix)
        prefix_left = len(prefix0)
        packer: BestFitPacker[Processed] = BestFitPacker(cfg.seq_len, cfg.pack_buffer)
        sids: dict[int, tuple[int, int]] = {}  # id(item) -> sid
        consumed = self._consumed
        failures = 0
        src_skips: dict[int, int] = {}  # consecutive skips per source
        received = 0
        workers = max(1, cfg.num_workers)
        chunk = cfg.worker_chunk if cfg.num_workers > 0 else 1
        try:
            while True:
                rows = []
                while len(rows) < cfg.batch_size:
                    while not packer.full:
                        sid, lane, after = next(plan)
                        res = next(results)
                        if ahead is not None:
                            ahead.consumed += 1
                        if res.sid != tuple(sid):
                            raise RuntimeError(f"loader: worker returned {res.sid} where {sid} was due "
                                               f"(internal ordering error)")
                        if lane is None:
                            prefix_left -= 1
                            consumed += 1
                        elif lane >= 0:
                            cursors[lane] = after
                            consumed += 1
                        self._worker_counters[((received // chunk) % workers, res.sid[0])] = res.counters
                        received += 1
                        if res.item is None:
                            self.counts["skipped"][res.skip.split(":")[0] if res.skip else "?"] += 1
                            benign = res.skip in ("synthetic cap", "overlong", "video route")
                            failures = 0 if benign else failures + 1
                            if failures >= cfg.max_consecutive_failures:
                                raise RuntimeError(
                                    f"loader: {failures} consecutive unreadable samples, the last one "
                                    f"{res.where} key {res.key!r}: {res.skip}. Check the dataset with "
                                    f"`mmlake datalake verify`.")
                            # a source that only ever skips (every sample overlong, or capped away)
                            # would otherwise be drawn from forever without yielding anything
                            s_idx = res.sid[0]
                            src_skips[s_idx] = src_skips.get(s_idx, 0) + 1
                            if src_skips[s_idx] >= cfg.max_consecutive_failures * 16:
                                why = res.skip.split(":")[0] if res.skip else "?"
                                hint = {"overlong": "raise seq_len or use overlong='truncate'",
                                        "synthetic cap": "raise its max_synthetic or its share of real samples",
                                        "video route": "its videos are outside min_video_s/max_video_s"}
                                raise RuntimeError(
                                    f"loader: source {self.sources[s_idx].ref} skipped its last {src_skips[s_idx]} "
                                    f"samples in a row ({why}; the last {res.where} key {res.key!r}): it yields "
                                    f"nothing. {hint.get(why, 'Check the dataset with `mmlake datalake verify`')}.")
                            continue
                        failures = 0
                        src_skips[res.sid[0]] = 0
                        sids[id(res.item)] = res.sid
                        res.item.synthetic = res.synthetic  # type: ignore[attr-defined]
                        packer.add(res.item)
                    rows.append(packer.row())
                batch = collate_rows(rows, cfg.seq_len, [[it.key for it in row] for row in rows],
                                     [[sids[id(it)] for it in row] for row in rows], pad_id=self.tokenizer.pad)
                # the trainer receives this batch: commit the state to it
                self._consumed, self._cursors = consumed, dict(cursors)
                self._prefix = prefix0[len(prefix0) - prefix_left:]
                self._pending = [sids[id(it)] for it in packer.buffer]
                for row in rows:
                    for it in row:
                        s = sids.pop(id(it))[0]
                        self.counts["by_source"][s] += 1
                        self.counts["synthetic"][s] += int(getattr(it, "synthetic", False))
                        self.counts["samples"] += 1
                        self.counts["tokens"] += len(it)
                        self.counts["loss_tokens"] += int((it.labels != -100).sum())
                        self.counts["truncated"] += int(it.truncated)
                self.counts["slots"] += cfg.batch_size * cfg.seq_len
                self.step += 1
                if cfg.step_log:
                    self._log_rows.append({"step": self.step - 1, "rank": cfg.rank,
                                           "sample_keys": batch["sample_keys"],
                                           "augment_params": json.dumps(batch["augment_params"])})
                    if len(self._log_rows) >= 100:
                        self.flush_step_log()
                self._maybe_progress()
                yield batch
        finally:
            if ahead is not None:
                ahead.close()
            close = getattr(results, "close", None)
            if close is not None:
                close()

    # -- observability ------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """Counters and rates since this loader was built (or resumed)."""
        c = self.counts
        dt = max(1e-9, time.monotonic() - self._t0)
        w: Counter[str] = Counter()
        for wc in self._worker_counters.values():
            w.update(wc)
        hits, misses = w.get("hits", 0), w.get("misses", 0)
        total = max(1, sum(c["by_source"]))
        return {
            "step": self.step, "samples": c["samples"], "tokens": c["tokens"],
            "samples_per_s": c["samples"] / dt, "tokens_per_s": c["tokens"] / dt,
            "fill": c["tokens"] / c["slots"] if c["slots"] else 0.0,
            "loss_tokens": c["loss_tokens"], "truncated": c["truncated"], "skipped": dict(c["skipped"]),
            "cache_hit_rate": hits / (hits + misses) if hits + misses else None,
            "store_requests": w.get("requests", 0), "store_requests_per_s": w.get("requests", 0) / dt,
            "mixture": {s.ref: n / total for s, n in zip(self.sources, c["by_source"], strict=True)},
            "synthetic_share": {s.ref: (y / n if n else 0.0)
                                for s, y, n in zip(self.sources, c["synthetic"], c["by_source"], strict=True)},
        }

    def _maybe_progress(self) -> None:
        if not self.cfg.progress:
            return
        now = time.monotonic()
        if now - self._last_progress < self.cfg.progress_every:
            return
        self._last_progress = now
        m = self.metrics()
        mix = " ".join(f"{k.split('@')[0]}={v:.2f}" for k, v in m["mixture"].items())
        print(f"[loader rank {self.cfg.rank}] step {m['step']} | {m['samples_per_s']:.1f} samples/s "
              f"{m['tokens_per_s']:.0f} tok/s | fill {m['fill']:.3f} | skipped {sum(m['skipped'].values())} | "
              f"mix {mix}", file=sys.stderr, flush=True)

    def flush_step_log(self) -> None:
        if not self.cfg.step_log or not self._log_rows:
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        out = Path(self.cfg.step_log)
        out.mkdir(parents=True, exist_ok=True)
        first = self._log_rows[0]["step"]
        path = out / f"rank{self.cfg.rank:05d}-step{first:09d}.parquet"
        tmp = path.with_name("." + path.name + ".tmp")
        pq.write_table(pa.Table.from_pylist(self._log_rows), tmp)
        tmp.replace(path)
        self._log_rows = []


def build_loader(cfg: LoaderConfig) -> Loader:
    """The loader for ``cfg`` (sources resolved now: deprecated versions warn, deleted refuse)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise ImportError("the mmlake loader yields PyTorch tensors: install it with pip install 'mmlake[train]'") from None
    return Loader(cfg)
