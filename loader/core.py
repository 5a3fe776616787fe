"""``LoaderConfig``, ``SourceSpec`` and ``build_loader``: the resumable training loader.

Data flow for rank ``r`` of ``R``: the planner (``loader.plan``) walks the global stream and
keeps the elements ``i % R == r``; worker ``w`` of ``W`` reads, decodes, augments and
tokenizes every ``W``-th of those (``loader.render``); the main process receives them in the
rank's order (PyTorch's DataLoader hands out work round-robin and returns it in order), packs
them best-fit into rows (``loader.packing``) and yields batches. The state covers what the
trainer has *received*: the rank's next element (a planner snapshot: position, mixer credits,
per-source cursors), how many it consumed, and the ids in the packer -- nothing that depends
on ``W`` or on what the workers prefetched.
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
from loader.plan import Planner, Snapshot, StreamDef, merge_states, schedule_to_json
from loader.render import Processed, SampleProcessor, SkipSample
from loader.source import ShardCache, Source
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

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"source {self.dataset}: weight must be >= 0, got {self.weight}")
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
    pack_buffer: int = 64
    prefetch: int = 2
    #: consecutive elements a worker prepares and sends as one message
    worker_chunk: int = 8
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

    def __init__(self, sources: list[Source], processor: SampleProcessor, seed: int) -> None:
        self.sources, self.processor, self.seed = sources, processor, seed

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
        res = _Result(sid, where=loc.where, key=loc.key)
        try:
            sample = decode_members(loc.members, loc.key, loc.where)
            res.synthetic = bool(sample.meta.get("synthetic"))
            if res.synthetic and not src.keeps_synthetic(self.seed, loc.key):
                res.skip = "synthetic cap"
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


def _rank_items(stream: StreamDef, rank: int, world: int, at: Snapshot, pending: Sequence[tuple[int, int]]
                ) -> Iterator[tuple[tuple[int, int], Snapshot | None]]:
    """The rank's elements from a state: the packer's pending ids, then the planner's items.
    Each comes with the snapshot of the *following* planner element (None for pending ones)."""
    for sid in pending:
        yield sid, None
    it = iter(Planner(stream, rank, world, at))
    _, cur = next(it)
    for snap, nxt in it:
        yield cur, snap
        cur = nxt


class _WorkerStream:
    """An IterableDataset: worker ``w`` of ``W`` processes the blocks of ``chunk`` consecutive
    elements numbered ``w, w + W, ...`` and sends each block as one message (fewer, larger
    messages than one per sample: the main process's share of the work stays small)."""

    def __init__(self, work: _Work, stream: StreamDef, rank: int, world: int, at: Snapshot,
                 pending: list[tuple[int, int]], chunk: int = 1) -> None:
        self.work, self.stream, self.rank, self.world, self.at, self.pending = work, stream, rank, world, at, pending
        self.chunk = max(1, int(chunk))

    def __iter__(self) -> Iterator[list[_Result]]:
        import torch.utils.data as tud

        info = tud.get_worker_info()
        w, n = (info.id, info.num_workers) if info is not None else (0, 1)
        k = self.chunk
        items = _rank_items(self.stream, self.rank, self.world, self.at, self.pending)
        chunk: list[_Result] = []
        for j, (sid, _) in enumerate(items):
            if (j // k) % n == w:  # worker w takes blocks w, w + n, ... of k consecutive elements
                chunk.append(self.work(sid))
                if len(chunk) == k:
                    yield chunk
                    chunk = []


class Loader:
    """An iterable of packed batches with ``state_dict()`` / ``load_state_dict()``."""

    def __init__(self, cfg: LoaderConfig) -> None:
        self.cfg = cfg
        self.tokenizer = load_tokenizer(cfg.tokenizer)
        self.sources = [Source.open(i, s.dataset, registry=cfg.registry, max_synthetic=s.max_synthetic)
                        for i, s in enumerate(cfg.sources)]
        self.schedule = schedule_to_json(self._compensated(cfg.weights_schedule()))
        self.processor = SampleProcessor(self.tokenizer, seed=cfg.seed, policy=cfg.augment, seq_len=cfg.seq_len,
                                         max_pixels=cfg.max_pixels, coords=cfg.coords, overlong=cfg.overlong)
        cache = None
        if cfg.cache_dir != "off" and (cfg.cache_dir is not None or any(s.uri.startswith("s3://")
                                                                         for s in self.sources)):
            from mmlake.settings import load_settings

            root = cfg.cache_dir or str(Path(load_settings().home) / "cache" / "shards")
            cache = ShardCache(root, cfg.cache_bytes)
        rate = None if cfg.requests_per_s is None else cfg.requests_per_s / max(1, cfg.num_workers)
        for s in self.sources:
            s.configure(cache, rate, cfg.mem_cache_bytes)
        self.stream = StreamDef(self.schedule)
        self._next = Snapshot(0)
        self._consumed = 0
        self._pending: list[tuple[int, int]] = []
        self.step = 0
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
            "seq_len": c.seq_len,
            "tokenizer": self.tokenizer.digest,
            "augment": json.loads(json.dumps(resolve_policy(c.augment), default=list)),
            "max_pixels": c.max_pixels,
            "coords": c.coords,
            "overlong": c.overlong,
            "pack_buffer": c.pack_buffer,
        }

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What the trainer has received so far; small and JSON-serialisable."""
        self.flush_step_log()
        return {
            "format": STATE_FORMAT, "version": 1, "fingerprint": self.fingerprint(),
            "rank": self.cfg.rank, "world_size": self.cfg.world_size,
            "stream": self.stream.to_json(), "consumed": self._consumed, "next": self._next.to_json(),
            "pending": [list(p) for p in self._pending], "step": self.step,
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
        same_weights = all(s["stream"]["schedule"] == self.schedule for s in states)
        if old_world == self.cfg.world_size and same_weights:
            mine = [s for s in states if int(s["rank"]) == self.cfg.rank]
            if not mine:
                raise ValueError(f"no state for rank {self.cfg.rank} among ranks {[s['rank'] for s in states]}")
            s = mine[0]
            self.stream = StreamDef.from_json(s["stream"])
            self._next = Snapshot.from_json(s["next"])
            self._consumed = int(s["consumed"])
            self._pending = [(int(a), int(b)) for a, b in s["pending"]]
            self.step = int(s["step"])
            self._restore_counts(s["counts"])
            return
        if len(states) == 1 and old_world > 1:
            raise ValueError(f"the state is rank {states[0]['rank']} of {old_world}; to change the world size "
                             f"(or the weights with several ranks) pass the list of all {old_world} ranks' states")
        self.stream = merge_states(states, schedule=self.schedule)
        self._next, self._consumed, self._pending = Snapshot(0), 0, []
        self.step = max(int(s["step"]) for s in states)

    def _restore_counts(self, counts: dict[str, Any]) -> None:
        self.counts = {**counts, "skipped": Counter(counts.get("skipped", {}))}

    def _check(self, s: dict[str, Any]) -> None:
        if not isinstance(s, dict) or s.get("format") != STATE_FORMAT:
            raise ValueError("not an mmlake loader state (expected the dict returned by Loader.state_dict())")
        if s.get("version") != 1:
            raise ValueError(f"loader state version {s.get('version')} is not supported (expected 1)")
        mine, theirs = self.fingerprint(), s["fingerprint"]
        diffs = [f"{k}: state has {theirs.get(k)!r}, config has {mine[k]!r}" for k in mine if theirs.get(k) != mine[k]]
        if diffs:
            raise ValueError("the loader state does not match this config (resuming would not be deterministic): "
                             + "; ".join(diffs))

    # -- iteration --------------------------------------------------------------------------------
    def _results(self, work: _Work) -> Iterator[_Result]:
        cfg = self.cfg
        chunk = cfg.worker_chunk if cfg.num_workers > 0 else 1
        ws = _WorkerStream(work, self.stream, cfg.rank, cfg.world_size, self._next, list(self._pending), chunk)
        if cfg.num_workers == 0:
            for block in ws:
                yield from block
            return
        import torch.utils.data as tud

        from loader._torchds import WorkerDataset

        dl = tud.DataLoader(WorkerDataset(ws), batch_size=None, num_workers=cfg.num_workers,
                            prefetch_factor=cfg.prefetch, collate_fn=_identity, persistent_workers=False,
                            multiprocessing_context=cfg.mp_context)
        for block in dl:
            yield from block

    def __iter__(self) -> Iterator[dict[str, Any]]:
        cfg = self.cfg
        work = _Work(self.sources, self.processor, cfg.seed)
        results = self._results(work)
        plan = _rank_items(self.stream, cfg.rank, cfg.world_size, self._next, list(self._pending))
        n_pending = len(self._pending)
        packer: BestFitPacker[Processed] = BestFitPacker(cfg.seq_len, cfg.pack_buffer)
        sids: dict[int, tuple[int, int]] = {}  # id(item) -> sid
        consumed, nxt = self._consumed, self._next
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
                        sid, after = next(plan)
                        res = next(results)
                        if res.sid != tuple(sid):
                            raise RuntimeError(f"loader: worker returned {res.sid} where {sid} was due "
                                               f"(internal ordering error)")
                        if n_pending > 0:
                            n_pending -= 1
                        else:
                            consumed += 1
                            nxt = after if after is not None else nxt
                        self._worker_counters[((received // chunk) % workers, res.sid[0])] = res.counters
                        received += 1
                        if res.item is None:
                            self.counts["skipped"][res.skip.split(":")[0] if res.skip else "?"] += 1
                            benign = res.skip in ("synthetic cap", "overlong")
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
                                        "synthetic cap": "raise its max_synthetic or its share of real samples"}
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
                self._consumed, self._next = consumed, nxt
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
