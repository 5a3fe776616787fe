"""One task of one pass: the code every runner runs, in whatever process it runs it.

A pipeline is cut into passes at its dedupe blocks: pass *k* reads its partition (an input
range, or what pass *k-1* staged), drops the samples the driver decided are duplicates, runs
the per-sample stages of segment *k*, computes the signatures of dedupe block *k*, and writes
its survivors as a shard -- staged for the next pass, or final. Its result (accounting rows,
scores, signatures, the shard) is written as a completion marker *after* the shard, so a
relaunched job loads finished tasks and redoes only the others.

Errors: a stage raises ``Reject`` for a bad sample (accounted, never fatal); an unexpected
exception is accounted as ``stage_error`` too, but ``MAX_CONSECUTIVE_ERRORS`` of them in a row
mean something systematic is wrong, and the task fails naming dataset, shard and key.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from datalake import DatasetVersion, Lake, Sample
from datalake.shards import ShardInfo, ShardReader, ShardWriter, decode_members
from datalake.stats import VersionStats
from datalake.store import open_store
from pipelines.sources import FILTERED_REASONS
from pipelines.stage import TASK_LAKE, DedupeStage, FilterStage, MapStage, Reject, Stage, build_stage

__all__ = ["TaskSpec", "run_task", "read_range", "MAX_CONSECUTIVE_ERRORS", "marker_path"]

MAX_CONSECUTIVE_ERRORS = 20


@dataclass(frozen=True)
class TaskSpec:
    task: int
    pass_no: int
    lake_uri: str
    output: str
    write_id: str
    stages: tuple[tuple[str, dict[str, Any]], ...]
    segment: tuple[int, ...]  # indices of per-sample stages run in this pass
    block: tuple[int, ...]  # indices of dedupe stages whose signatures this pass computes
    #: ("input", manifest_uri, shard, start, stop) | ("staged", ShardInfo json) | ("gui", json, start, stop)
    source: tuple[Any, ...]
    final: bool
    input_ref: str
    drop: dict[str, tuple[str, str, str, str, str | None]] = field(default_factory=dict)
    reuse_scores: str | None = None  # a scores.parquet URI
    env: dict[str, str] = field(default_factory=dict)
    #: decision files of the previous block for this task (``pipelines.dedupe_lake``), read here
    drop_tables: tuple[str, ...] = ()
    #: the previous block's items of this task: survivors' signatures go to the signatures table
    prev_items: str | None = None


def part_uri(store: Any, write_id: str, pass_no: int, task: int, what: str) -> str:
    """Where a task writes its table parts (outcomes, scores, signatures) until the commit."""
    return store.url(f"shards/{write_id}/parts/p{pass_no}-t{task:05d}.{what}.parquet")


def items_uri(store: Any, write_id: str, pass_no: int, task: int) -> str:
    return store.url(f"shards/{write_id}/pass{pass_no}/items-{task:05d}.parquet")


OUTCOME_COLUMNS = ("key", "input", "outcome", "stage", "reason", "detail", "duplicate_of", "scores")


def table_bytes(rows: list[dict[str, Any]], columns: dict[str, Any]) -> bytes:
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({c: pa.array([r.get(c) for r in rows], t) for c, t in columns.items()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def marker_path(write_id: str, pass_no: int, task: int) -> str:
    return f"shards/{write_id}/pass{pass_no}/task-{task:05d}.result.pkl"


@lru_cache(maxsize=8)
def _stages(stages: str) -> list[Stage]:
    built = [build_stage(n, p) for n, p in json.loads(stages)]
    for s in built:
        s.setup()  # once per worker process
    return built


@lru_cache(maxsize=2)
def _scores_table(uri: str) -> Any:
    """The scores table as Arrow columns, read once per worker process."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    head, _, name = uri.rpartition("/")
    return pq.read_table(pa.BufferReader(open_store(head).read(name)), columns=["key", "stage", "scores"],
                         use_threads=False)


def _scores(uri: str, keys: set[str] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """A previous version's filter scores by (key, stage): only the rows of ``keys`` (this
    task's samples) become Python objects -- the key match runs in Arrow -- so a task holds its
    own share, not the whole table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _scores_table(uri)
    if keys is not None:
        table = table.filter(pc.is_in(table["key"], value_set=pa.array(sorted(keys), pa.string())))
    return {(r["key"], r["stage"]): json.loads(r["scores"]) for r in table.to_pylist()}


def read_range(version: DatasetVersion, shard: int, start: int, stop: int) -> list[Sample]:
    """Samples ``[start, stop)`` of a shard with one ranged read."""
    return _read_entries(version.shard(shard), start, stop)


def _read_entries(reader: ShardReader, start: int, stop: int) -> list[Sample]:
    entries = reader.index.entries[start:stop]
    if not entries:
        return []
    base = entries[0].offset
    blob = reader.store.read_range(reader.info.path, base, entries[-1].offset + entries[-1].length - base)
    out = []
    for e in entries:
        o = e.offset - base
        members = {k: blob[o + off: o + off + size] for k, (off, size) in e.members.items()}
        out.append(decode_members(members, e.key, reader.where))
    return out


def _load(t: TaskSpec) -> Any:
    """The task's samples: a range of an input, what the previous pass staged, or what a
    collected source makes (samples and ``Count`` statistics, ``pipelines.sources``)."""
    if t.source[0] == "gui":
        from pipelines.sources import load_source

        return load_source(t.source)
    if t.source[0] == "input":
        _, uri, shard, start, stop = t.source
        return read_range(DatasetVersion.open(uri), shard, start, stop)
    if t.source[1] is None:  # the previous pass kept nothing of this task
        return []
    info = ShardInfo.from_json(t.source[1])
    store = Lake.open(t.lake_uri).dataset_store(t.output)
    return _read_entries(ShardReader(store, info), 0, info.samples)


def run_task(t: TaskSpec) -> dict[str, Any]:
    """One task; Python warnings raised while it runs (Pillow's palette-transparency note, once
    per image) are counted by message in ``result["warnings"]`` instead of flooding stderr."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        token = TASK_LAKE.set(t.lake_uri)
        try:
            result = _run_task(t)
        finally:
            TASK_LAKE.reset(token)
    if caught:
        counts: dict[str, int] = dict(result.get("warnings") or {})
        for w in caught:
            msg = f"{w.category.__name__}: {str(w.message)[:200]}"
            counts[msg] = counts.get(msg, 0) + 1
        result["warnings"] = counts
    return result


def _run_task(t: TaskSpec) -> dict[str, Any]:
    for k, v in t.env.items():
        os.environ.setdefault(k, v)
    store = Lake.open(t.lake_uri).dataset_store(t.output)
    marker = marker_path(t.write_id, t.pass_no, t.task)
    if store.exists(marker):
        result = pickle.loads(store.read(marker))
        result["resumed"] = True
        return result  # type: ignore[no-any-return]
    stages = _stages(json.dumps([list(s) for s in t.stages]))
    loaded = _load(t)
    if t.reuse_scores:
        mine = {s.key for s in loaded if isinstance(s, Sample)} if isinstance(loaded, list) else None
        reuse = _scores(t.reuse_scores, mine)
    else:
        reuse = {}
    if t.drop_tables:  # what the engine decided for this task's samples
        from pipelines.dedupe_lake import read_decisions

        drop = dict(t.drop)
        for uri in t.drop_tables:
            drop.update(read_decisions(uri))
        t = dataclasses.replace(t, drop=drop)
    where = f"{t.input_ref} task {t.task} ({t.source[0]} {t.source[1] if t.source[0] == 'input' else ''})"
    outcomes: list[dict[str, Any]] = []
    scores_rows: list[dict[str, Any]] = []
    survivors: list[Sample] = []
    errors_in_a_row = 0
    n_in = 0
    scored = 0
    source_stats: dict[str, int] = {}
    # per stage: samples that entered it and seconds spent in it (this task's share)
    stage_in: dict[str, int] = {}
    stage_s: dict[str, float] = {}
    for s in loaded:
        if not isinstance(s, Sample):  # a collected source's statistic, or an input that gave no sample
            source_stats[s.name] = source_stats.get(s.name, 0) + s.n
            if s.key is not None:
                n_in += 1
                outcomes.append(_row(s.key, t.input_ref, "filtered" if s.reason in FILTERED_REASONS else "rejected",
                                     "source", s.reason, s.detail, None, None))
            continue
        n_in += 1
        current = s
        if s.key in t.drop:
            outcome, stage, reason, detail, dup_of = t.drop[s.key]
            if outcome != "prune":
                outcomes.append(_row(s.key, t.input_ref, outcome, stage, reason, detail, dup_of, None))
                continue
            from pipelines.stages.interleaved import prune_images  # parts a global stage removes

            pruned = prune_images(s, set(dup_of), stage)
            if pruned is None:
                outcomes.append(_row(s.key, t.input_ref, "filtered", stage, "only_repeated_images", detail, None, None))
                continue
            current = pruned
        try:
            for i in t.segment:
                st = stages[i]
                stage_in[st.name] = stage_in.get(st.name, 0) + 1
                t0 = time.perf_counter()
                try:
                    if isinstance(st, MapStage):
                        current = st.map(current)
                    elif isinstance(st, FilterStage):
                        sc = reuse.get((current.key, st.name))
                        if sc is None:
                            sc = st.score(current)
                            scored += 1
                        scores_rows.append({"key": current.key, "stage": st.name, "scores": json.dumps(sc)})
                        meta = dict(current.meta)
                        meta["scores"] = {**meta.get("scores", {}), st.name: sc}
                        current = dataclasses.replace(current, meta=meta)
                        reason = st.decide(sc)
                        if reason:
                            outcomes.append(_row(s.key, t.input_ref, "filtered", st.name, reason, "", None, sc))
                            break
                        current = st.prune(current, sc)
                finally:
                    stage_s[st.name] = stage_s.get(st.name, 0.0) + time.perf_counter() - t0
            else:
                survivors.append(current)
            errors_in_a_row = 0
        except Reject as r:
            outcomes.append(_row(s.key, t.input_ref, "rejected", stages[i].name, r.reason, r.detail, None, None))
            errors_in_a_row = 0
        except Exception as exc:  # noqa: BLE001 - one bad sample must not kill the run ...
            errors_in_a_row += 1
            if errors_in_a_row >= MAX_CONSECUTIVE_ERRORS:  # ... but a systematic failure does
                raise RuntimeError(f"stage {stages[i].name} failed on {errors_in_a_row} samples in a row, last at "
                                   f"dataset {t.input_ref}, {where}, key {s.key!r}: {type(exc).__name__}: {exc}") from exc
            outcomes.append(_row(s.key, t.input_ref, "rejected", stages[i].name, "stage_error",
                                 f"{type(exc).__name__}: {exc}", None, None))
    items, survivors = _signatures(stages, t, survivors, outcomes, stage_in, stage_s)
    shard: ShardInfo | None = None
    stats = VersionStats()
    if survivors:
        name = f"part-{t.task:05d}.tar" if t.final else f"pass{t.pass_no}/task-{t.task:05d}.tar"
        w = ShardWriter(store, f"shards/{t.write_id}/{name}")
        for s in survivors:
            w.add(s)
            if t.final:
                stats.add(s)
        shard = w.close()
    result = {"task": t.task, "pass": t.pass_no, "inputs": n_in, "shard": shard.to_json() if shard else None,
              "stats": stats.to_json(), "kept": len(survivors), "scored": scored, "resumed": False,
              "source_stats": source_stats, "stage_in": stage_in, "stage_seconds": stage_s,
              **_write_parts(t, store, outcomes, scores_rows, items)}
    store.put(marker, pickle.dumps(result))
    return result


def _write_parts(t: TaskSpec, store: Any, outcomes: list[dict[str, Any]], scores_rows: list[dict[str, Any]],
                 items: list[tuple[str, Any, dict[str, Any]]]) -> dict[str, Any]:
    """The task's rows go to the lake, not to the driver: what returns is their count by reason
    and where they are (O(1) per task, whatever the task's size)."""
    import pyarrow as pa

    from pipelines.dedupe_lake import write_items

    parts: dict[str, str] = {}
    if outcomes:
        parts["outcomes"] = part_uri(store, t.write_id, t.pass_no, t.task, "outcomes")
        _put_uri(parts["outcomes"], table_bytes(outcomes, {c: pa.string() for c in OUTCOME_COLUMNS}))
    if scores_rows:
        parts["scores"] = part_uri(store, t.write_id, t.pass_no, t.task, "scores")
        _put_uri(parts["scores"], table_bytes(scores_rows, {"key": pa.string(), "stage": pa.string(),
                                                            "scores": pa.string()}))
    if t.prev_items:  # the previous block's signatures of the samples its dedupe kept
        sig_rows = _surviving_signatures(t.prev_items, t.drop)
        if sig_rows:
            parts["signatures"] = part_uri(store, t.write_id, t.pass_no, t.task, "signatures")
            _put_uri(parts["signatures"], table_bytes(sig_rows, {"key": pa.string(), "sigs": pa.binary()}))
    items_at = None
    if t.block:
        items_at = items_uri(store, t.write_id, t.pass_no, t.task)
        write_items(items_at, items)
    tally: dict[str, int] = {}
    by_stage: dict[str, int] = {}  # "stage|outcome:reason" -> samples
    for o in outcomes:
        k = f"{o['outcome']}:{o['reason']}"
        tally[k] = tally.get(k, 0) + 1
        by_stage[f"{o['stage']}|{k}"] = by_stage.get(f"{o['stage']}|{k}", 0) + 1
    return {"tally": tally, "stage_tally": by_stage, "parts": parts, "items": len(items), "items_at": items_at}


def _surviving_signatures(uri: str, drop: dict[str, tuple[Any, ...]]) -> list[dict[str, Any]]:
    from pipelines.dedupe_lake import _table

    t = _table(uri).to_pydict()
    return [{"key": k, "sigs": t["sigs"][i]} for i, k in enumerate(t["key"])
            if drop.get(k, ("",))[0] != "duplicate"]


def _put_uri(uri: str, data: bytes) -> None:
    from pipelines.dedupe_lake import _put

    _put(uri, data)


def _signatures(stages: list[Stage], t: TaskSpec, survivors: list[Sample], outcomes: list[dict[str, Any]],
                stage_in: dict[str, int], stage_s: dict[str, float]
                ) -> tuple[list[tuple[str, Any, dict[str, Any]]], list[Sample]]:
    """(key, rank, {stage: signature}) for each survivor; samples whose signature cannot be
    computed are rejected here. Each dedupe stage's samples in and signature time are counted
    in ``stage_in`` / ``stage_s``."""
    if not t.block:
        return [], survivors
    sigs: dict[str, dict[str, Any]] = {s.key: {} for s in survivors}
    alive = list(survivors)
    for i in t.block:
        st = stages[i]
        assert isinstance(st, DedupeStage)
        stage_in[st.name] = stage_in.get(st.name, 0) + len(alive)
        t0 = time.perf_counter()
        try:
            values = st.signatures(alive)
        except Reject:
            values = []
            for s in alive:
                try:
                    values.append(st.signature(s))
                except Reject as r:
                    values.append(r)
        stage_s[st.name] = stage_s.get(st.name, 0.0) + time.perf_counter() - t0
        kept = []
        for s, v in zip(alive, values, strict=True):
            if isinstance(v, Reject):
                outcomes.append(_row(s.key, t.input_ref, "rejected", st.name, v.reason, v.detail, None, None))
            else:
                sigs[s.key][st.name] = v
                kept.append(s)
        alive = kept
    return [(s.key, type(stages[t.block[0]]).rank(s), sigs[s.key]) for s in alive], alive


def _row(key: str, ref: str, outcome: str, stage: str, reason: str, detail: str, dup_of: str | None,
         scores: dict[str, Any] | None) -> dict[str, Any]:
    return {"key": key, "input": ref, "outcome": outcome, "stage": stage, "reason": reason, "detail": detail,
            "duplicate_of": dup_of, "scores": json.dumps(scores) if scores is not None else None}
