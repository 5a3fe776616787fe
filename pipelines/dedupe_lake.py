"""Dedupe where the data lives: the engine reads the items the tasks wrote to the lake, finds and
verifies candidate pairs, joins them into clusters and writes the decisions back to the lake.

The driver holds only part descriptors and counts -- never a record, a pair or a decision:

1. every task of a pass with dedupe stages writes its survivors' ``(key, rank, signatures)`` to
   ``pass<k>/items-<task>.parquet`` (``write_items``); a reference version (``against``) takes
   part through its stored ``signatures.parquet``;
2. a stage's job (``DedupeJob``) lists those parts with the global number of their first item;
   ``read_nodes`` turns one part into node rows (items an earlier stage of the same block
   removed are left out, read from that stage's decision file of the same task);
3. ``band_rows`` -> shuffle by band -> ``verify_rows`` gives verified pairs (``verify_group``);
4. connected components by alternating large-star / small-star rounds (Kiveris et al. 2014,
   as NeMo Curator and Data-Juicer do at TB scale), each a shuffle by node, until a round
   leaves the edge set as it was (``edge_checksum``);
5. one more shuffle by component brings each component's edges and nodes together, and
   ``cluster_rows`` applies the same ``clusters`` rule as the in-process path to that component
   alone (stars around the best-ranked item are decided within a component, so this is the
   global answer);
6. a shuffle by task writes one decision file per task (``write_decisions``); the next pass's
   task reads its own file.

``dedupe_local`` runs the same job in-process for the embedded runner. Every engine gives the
same decisions, because every step is a pure function of the items.
"""

from __future__ import annotations

import io
import json
import pickle
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["ItemPart", "DedupeJob", "dedupe_local", "dedupe_on", "write_items", "read_decisions",
           "NODE_SCHEMA", "EDGE_SCHEMA", "connected_components"]

NODE_SCHEMA = "n long, task long, key string, ref string, rank binary, sig binary"
EDGE_SCHEMA = "u long, v long"
BAND_SCHEMA = "g string, rec binary"
KEYED_SCHEMA = "k long, kind int, a long, b long, blob binary"
DECISION_SCHEMA = "task long, key string, detail string, duplicate_of string, stats string"
WRITTEN_SCHEMA = "task long, path string, count long, stats string"
MAX_ROUNDS = 200


@dataclass(frozen=True)
class ItemPart:
    """One task's items (or a reference version's signatures) and where its numbering starts."""

    uri: str  # the parquet file
    task: int  # -1: a reference version (its items always win)
    base: int  # global number of the first row
    ref: str  # the input the task read (qualifies duplicate_of across inputs), or the reference's ref
    removed: tuple[str, ...] = ()  # decision files of earlier stages of the block, same task


@dataclass(frozen=True)
class DedupeJob:
    stage: tuple[str, dict[str, Any]]  # (name, params) as in the spec
    parts: tuple[ItemPart, ...]
    out: str  # URI prefix for decision files: <out>-<task>.parquet
    partitions: int = 8


# -- lake I/O ---------------------------------------------------------------------------------


@lru_cache(maxsize=32)
def _store(head: str) -> Any:
    from datalake.store import open_store

    return open_store(head)


def _read(uri: str) -> bytes:
    from datalake.store import split_uri

    head, tail = split_uri(uri)
    return _store(head).read(tail)  # type: ignore[no-any-return]


def _exists(uri: str) -> bool:
    from datalake.store import split_uri

    head, tail = split_uri(uri)
    return _store(head).exists(tail)  # type: ignore[no-any-return]


def _put(uri: str, data: bytes) -> None:
    from datalake.store import split_uri

    head, tail = split_uri(uri)
    _store(head).put(tail, data)


def _table(uri: str) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_table(pa.BufferReader(_read(uri)), use_threads=False)


def _parquet(columns: dict[str, Any]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table(columns), buf)
    return buf.getvalue()


def write_items(uri: str, items: list[tuple[str, Any, dict[str, Any]]]) -> None:
    """A task's ``(key, rank, {stage: signature})`` rows, in the task's order."""
    import pyarrow as pa

    _put(uri, _parquet({"key": pa.array([k for k, _, _ in items], pa.string()),
                        "rank": pa.array([pickle.dumps(r) for _, r, _ in items], pa.binary()),
                        "sigs": pa.array([pickle.dumps(s) for _, _, s in items], pa.binary())}))


def count_rows(uri: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    return pq.read_metadata(pa.BufferReader(_read(uri))).num_rows  # type: ignore[no-any-return]


def read_decisions(uri: str) -> dict[str, tuple[str, str, str, str, str | None]]:
    """key -> the drop decision a pass applies (``duplicate`` of ``duplicate_of``)."""
    t = _table(uri).to_pydict()
    return {k: ("duplicate", t["stage"][i], "duplicate", t["detail"][i], t["duplicate_of"][i])
            for i, k in enumerate(t["key"])}


# -- the steps, each a function of pandas frames (what Ray's map_batches and Spark's mapInPandas run)


def _build(stage: tuple[str, dict[str, Any]]) -> Any:
    return _built(json.dumps([stage[0], stage[1]], sort_keys=True))


@lru_cache(maxsize=8)
def _built(spec: str) -> Any:
    from pipelines.stage import build_stage

    name, params = json.loads(spec)
    return build_stage(name, params)


def read_nodes(part: ItemPart, stage_name: str) -> Any:
    """One part as node rows ``n, task, key, ref, rank, sig`` (this stage's signature)."""
    import pandas as pd

    removed: set[str] = set()
    for uri in part.removed:
        if _exists(uri):
            removed.update(_table(uri).column("key").to_pylist())
    t = _table(part.uri).to_pydict()
    rows = []
    for i, key in enumerate(t["key"]):
        sigs = pickle.loads(t["sigs"][i])
        sig = sigs.get(stage_name)
        if sig is None or key in removed:
            continue
        if part.task < 0:  # a reference version: qualified key, always the best rank
            key = f"{part.ref}/{key}"
            rank = pickle.dumps((float("-inf"), key))
        else:
            rank = t["rank"][i]
        rows.append((part.base + i, part.task, key, part.ref, rank, pickle.dumps(sig)))
    return pd.DataFrame(rows, columns=["n", "task", "key", "ref", "rank", "sig"]).astype({"n": "int64", "task": "int64"})


def band_rows(nodes: Any, stage: tuple[str, dict[str, Any]]) -> Any:
    import pandas as pd

    st = _build(stage)
    out = [(r.group, pickle.dumps(r)) for n, sig in zip(nodes["n"], nodes["sig"], strict=True)
           for r in st.band_records(int(n), pickle.loads(sig))]
    return pd.DataFrame(out, columns=["g", "rec"])


def verify_rows(bands: Any, stage: tuple[str, dict[str, Any]]) -> Any:
    """A hash partition by band holds whole groups: verify each; pairs as edges (u < v)."""

    from pipelines.dedupe_core import verify_group

    st = _build(stage)
    groups: dict[str, list[Any]] = defaultdict(list)
    for g, rec in zip(bands["g"], bands["rec"], strict=True):
        groups[g].append(rec)
    pairs = [p for recs in groups.values() if len(recs) > 1
             for p in verify_group(st, [pickle.loads(r) for r in recs])]
    return _edges(pairs)


def _edges(pairs: Iterable[tuple[int, int]]) -> Any:
    import pandas as pd

    arr = sorted({(min(a, b), max(a, b)) for a, b in pairs if a != b})
    return pd.DataFrame(arr, columns=["u", "v"], dtype="int64") if arr else pd.DataFrame(
        {"u": pd.Series([], dtype="int64"), "v": pd.Series([], dtype="int64")})


def both_ways(edges: Any) -> Any:
    """Undirected edges as directed rows ``u -> v`` both ways (what a shuffle by ``u`` needs)."""
    import pandas as pd

    return pd.DataFrame({"u": pd.concat([edges["u"], edges["v"]], ignore_index=True),
                         "v": pd.concat([edges["v"], edges["u"]], ignore_index=True)})


def _neighbours(directed: Any) -> dict[int, set[int]]:
    adj: dict[int, set[int]] = defaultdict(set)
    for u, v in zip(directed["u"].tolist(), directed["v"].tolist(), strict=True):
        if u != v:
            adj[u].add(v)
    return adj


def large_star(directed: Any) -> Any:
    """Each node links its larger neighbours to the smallest node of its neighbourhood."""
    pairs = []
    for u, vs in _neighbours(directed).items():
        m = min(min(vs), u)
        pairs.extend((v, m) for v in vs if v > u)
    return _edges(pairs)


def small_star(directed: Any) -> Any:
    """Each node links itself and its smaller neighbours to the smallest of them."""
    pairs = []
    for u, vs in _neighbours(directed).items():
        small = [v for v in vs if v < u]
        if small:
            m = min(small)
            pairs.extend((v, m) for v in [*small, u] if v != m)
    return _edges(pairs)


def edge_checksum(directed: Any) -> Any:
    """(distinct undirected edges, their hash sum) of a partition shuffled by ``u``: each edge is
    counted once, in the partition of its smaller end."""
    import pandas as pd

    seen = {(u, v) for u, v in zip(directed["u"].tolist(), directed["v"].tolist(), strict=True) if u < v}
    h = sum(((u * 0x9E3779B97F4A7C15) ^ (v * 0xC2B2AE3D27D4EB4F)) % (1 << 61) for u, v in seen) % (1 << 61)
    return pd.DataFrame({"task": [-1], "path": [""], "count": [len(seen)], "stats": [json.dumps([h])]})


def label_rows(star: Any, pairs: Any, nodes: Any) -> Any:
    """Rows keyed by node for the join of labels (the converged stars), pairs and nodes."""
    import pandas as pd

    centers = sorted(set(star["u"].tolist()))  # converged: every edge is (centre, leaf), centre < leaf
    frames = [
        pd.DataFrame({"k": star["v"], "kind": 0, "a": star["u"], "b": -1, "blob": None}),  # leaf v's component is u
        pd.DataFrame({"k": centers, "kind": 0, "a": centers, "b": -1, "blob": None}),
        pd.DataFrame({"k": pairs["u"], "kind": 1, "a": pairs["u"], "b": pairs["v"], "blob": None}),
        pd.DataFrame({"k": nodes["n"], "kind": 2, "a": nodes["n"], "b": -1,
                      "blob": [pickle.dumps(r) for r in zip(nodes["task"], nodes["key"], nodes["ref"],
                                                             nodes["rank"], nodes["sig"], strict=True)]}),
    ]
    return _keyed(pd.concat(frames, ignore_index=True))


def _keyed(df: Any) -> Any:
    return df.astype({"k": "int64", "kind": "int32", "a": "int64", "b": "int64"})


def by_component(rows: Any) -> Any:
    """Shuffled by node: each node's label meets its pairs and its own row; out keyed by component."""
    import pandas as pd

    comp: dict[int, int] = {}
    for k, kind, a in zip(rows["k"].tolist(), rows["kind"].tolist(), rows["a"].tolist(), strict=True):
        if kind == 0 and comp.setdefault(k, a) != a:  # not a star: the rounds stopped early (a bug, never silent)
                raise RuntimeError(f"dedupe: node {k} labelled with two components ({comp[k]}, {a})")
    out = []
    for k, kind, a, b, blob in zip(rows["k"].tolist(), rows["kind"].tolist(), rows["a"].tolist(),
                                   rows["b"].tolist(), rows["blob"].tolist(), strict=True):
        if kind == 0 or k not in comp:
            continue  # a node in no pair is nobody's duplicate
        out.append((comp[k], kind, a, b, blob))
    return _keyed(pd.DataFrame(out, columns=["k", "kind", "a", "b", "blob"]))


def cluster_rows(rows: Any, stage: tuple[str, dict[str, Any]]) -> Any:
    """Shuffled by component: each component's clusters, as decision rows (and one stats row)."""
    comps: dict[int, tuple[list[tuple[int, int]], dict[int, Any]]] = defaultdict(lambda: ([], {}))
    for k, kind, a, b, blob in zip(rows["k"].tolist(), rows["kind"].tolist(), rows["a"].tolist(),
                                   rows["b"].tolist(), rows["blob"].tolist(), strict=True):
        if kind == 1:
            comps[k][0].append((a, b))
        else:
            comps[k][1][a] = pickle.loads(blob)
    st = _build(stage)
    out: list[tuple[Any, ...]] = []
    stats = _Stats()
    for pairs, info in comps.values():
        nodes = {n: (task, key, ref, pickle.loads(rank), pickle.loads(sig)) for n, (task, key, ref, rank, sig) in info.items()}
        out.extend(decide(st, pairs, nodes, stats))
    return _decisions(out, stats)


class _Stats:
    def __init__(self) -> None:
        self.clusters = self.duplicates = 0
        self.largest = 1
        self.max_distance: float | None = None

    def add(self, other: dict[str, Any]) -> None:
        self.clusters += other["clusters"]
        self.duplicates += other["duplicates"]
        self.largest = max(self.largest, other["largest"])
        d = other["max_distance"]
        if d is not None:
            self.max_distance = d if self.max_distance is None else max(self.max_distance, d)

    def as_dict(self) -> dict[str, Any]:
        return {"clusters": self.clusters, "duplicates": self.duplicates, "largest": self.largest,
                "max_distance": self.max_distance}


def decide(st: Any, pairs: list[tuple[int, int]], nodes: dict[int, tuple[int, str, str, Any, Any]],
           stats: _Stats) -> Iterator[tuple[int, str, str, str | None]]:
    """The clusters of these pairs (``dedupe_core.clusters``), as ``(task, key, detail,
    duplicate_of)`` for every own item that is not its cluster's representative."""
    from pipelines.dedupe_core import clusters

    dup = clusters(pairs, {n: v[3] for n, v in nodes.items()}, transitive=st.transitive)
    sizes = Counter(dup.values())
    stats.clusters += len(sizes)
    stats.duplicates += sum(sizes.values())
    stats.largest = max(stats.largest, 1 + max(sizes.values(), default=0))
    for n, keeper in sorted(dup.items()):
        task, key, ref, _, sig = nodes[n]
        if task < 0:
            continue  # reference items are never removed
        ktask, kkey, kref, _, ksig = nodes[keeper]
        of = kkey if ktask < 0 or kref == ref else f"{kref}/{kkey}"
        d = st.distance(sig, ksig)
        if d is not None:
            stats.max_distance = d if stats.max_distance is None else max(stats.max_distance, d)
        detail = f"{st.name} cluster" + (f"; distance {d:g} to its representative" if d is not None else "")
        yield task, key, detail, of


def _decisions(rows: list[tuple[Any, ...]], stats: _Stats) -> Any:
    import pandas as pd

    df = pd.DataFrame(rows, columns=["task", "key", "detail", "duplicate_of"])
    df["stats"] = None
    head = pd.DataFrame({"task": [-2], "key": [""], "detail": [""], "duplicate_of": [None],
                         "stats": [json.dumps(stats.as_dict())]})
    return pd.concat([head, df], ignore_index=True).astype({"task": "int64"})


def write_decisions(rows: Any, stage_name: str, out: str) -> Any:
    """Shuffled by task: one decision file per task; stats rows pass through."""
    import pandas as pd
    import pyarrow as pa

    written = []
    merged = _Stats()
    by_task: dict[int, list[tuple[str, str, str]]] = defaultdict(list)
    for task, key, detail, of, st in zip(rows["task"].tolist(), rows["key"].tolist(), rows["detail"].tolist(),
                                         rows["duplicate_of"].tolist(), rows["stats"].tolist(), strict=True):
        if task == -2:
            merged.add(json.loads(st))
        else:
            by_task[task].append((key, detail, of))
    for task, items in sorted(by_task.items()):
        items.sort()
        uri = decision_uri(out, task)
        _put(uri, _parquet({"key": pa.array([k for k, _, _ in items], pa.string()),
                            "stage": pa.array([stage_name] * len(items), pa.string()),
                            "detail": pa.array([d for _, d, _ in items], pa.string()),
                            "duplicate_of": pa.array([o for _, _, o in items], pa.string())}))
        written.append((task, uri, len(items), None))
    written.append((-2, "", 0, json.dumps(merged.as_dict())))
    return pd.DataFrame(written, columns=["task", "path", "count", "stats"]).astype({"task": "int64", "count": "int64"})


def decision_uri(out: str, task: int) -> str:
    return f"{out}-{task:05d}.parquet"


def summarise(written: Any) -> tuple[dict[int, str], dict[str, Any]]:
    """The write step's rows -> ({task: decision file}, stage statistics)."""
    files: dict[int, str] = {}
    stats = _Stats()
    for task, path, st in zip(written["task"].tolist(), written["path"].tolist(), written["stats"].tolist(), strict=True):
        if task == -2:
            stats.add(json.loads(st))
        elif task >= 0:
            files[task] = path
    return files, stats.as_dict()


# -- runners ----------------------------------------------------------------------------------


def dedupe_local(job: DedupeJob) -> tuple[dict[int, str], dict[str, Any]]:
    """The job in-process (the embedded runner): the same steps without shuffles."""

    from pipelines.dedupe_core import find_pairs

    st = _build(job.stage)
    nodes: dict[int, tuple[int, str, str, Any, Any]] = {}
    records = []
    for part in job.parts:
        df = read_nodes(part, st.name)
        for n, task, key, ref, rank, sig in zip(df["n"].tolist(), df["task"].tolist(), df["key"], df["ref"],
                                                df["rank"], df["sig"], strict=True):
            s = pickle.loads(sig)
            nodes[n] = (task, key, ref, pickle.loads(rank), s)
            records.extend(st.band_records(n, s))
    stats = _Stats()
    rows = list(decide(st, sorted(find_pairs(st, records)), nodes, stats))
    return summarise(write_decisions(_decisions(rows, stats), st.name, job.out))


class Engine:
    """What an engine offers the dedupe steps: a dataset of rows made from small inputs, a
    per-batch map, a hash shuffle followed by one call per whole partition, union, and collect."""

    def parallelize(self, inputs: list[Any], fn: Any, schema: str) -> Any: ...

    def map(self, ds: Any, fn: Any, schema: str) -> Any: ...

    def shuffle(self, ds: Any, key: str, fn: Any, schema: str, partitions: int) -> Any: ...

    def union(self, *ds: Any) -> Any: ...

    def collect(self, ds: Any) -> Any: ...  # a pandas frame (small results only)

    def count(self, ds: Any) -> int: ...

    def persist(self, ds: Any) -> Any: ...

    def release(self, ds: Any) -> None: ...


def dedupe_on(engine: Engine, job: DedupeJob) -> tuple[dict[int, str], dict[str, Any]]:
    """The job on Ray or Spark; what comes back to the driver is O(tasks)."""
    stage = job.stage
    name = _build(stage).name
    p = job.partitions
    if not job.parts:
        return {}, _Stats().as_dict()
    nodes = engine.persist(engine.parallelize(list(job.parts), lambda part: read_nodes(part, name), NODE_SCHEMA))
    bands = engine.map(nodes, lambda df: band_rows(df, stage), BAND_SCHEMA)
    pairs = engine.persist(engine.shuffle(bands, "g", lambda df: verify_rows(df, stage), EDGE_SCHEMA, p))
    if engine.count(pairs) == 0:
        return {}, _Stats().as_dict()
    edges = connected_components(engine, pairs, p, name)
    joined = engine.union(*[engine.map(x, fn, KEYED_SCHEMA) for x, fn in (
        (edges, lambda df: _keyed(label_rows(df, df.iloc[:0], _no_nodes(df)))),
        (pairs, lambda df: _keyed(label_rows(df.iloc[:0], df, _no_nodes(df)))),
        (nodes, lambda df: _keyed(label_rows(_no_edges(df), _no_edges(df), df))))])
    comps = engine.shuffle(joined, "k", by_component, KEYED_SCHEMA, p)
    decisions = engine.shuffle(comps, "k", lambda df: cluster_rows(df, stage), DECISION_SCHEMA, p)
    written = engine.collect(engine.shuffle(decisions, "task", lambda df: write_decisions(df, name, job.out),
                                            WRITTEN_SCHEMA, p))
    for ds in (nodes, pairs, edges):
        engine.release(ds)
    return summarise(written)


def connected_components(engine: Engine, pairs: Any, partitions: int, what: str = "dedupe") -> Any:
    """Alternating large-star / small-star rounds over undirected edges ``u < v`` until a round
    leaves the edge set unchanged: then every component is a star around its smallest node,
    edges ``(centre, leaf)``. O(log n) rounds; each is shuffles by node, nothing on the driver
    but two numbers per partition."""
    edges, last = pairs, None
    for _ in range(MAX_ROUNDS):
        big = engine.shuffle(engine.map(edges, both_ways, EDGE_SCHEMA), "u", large_star, EDGE_SCHEMA, partitions)
        small = engine.persist(engine.shuffle(engine.map(big, both_ways, EDGE_SCHEMA), "u", small_star, EDGE_SCHEMA,
                                              partitions))
        sums = engine.collect(engine.shuffle(engine.map(small, both_ways, EDGE_SCHEMA), "u", edge_checksum,
                                             WRITTEN_SCHEMA, partitions))
        check = (int(sums["count"].sum()), sum(json.loads(s)[0] for s in sums["stats"]) % (1 << 61)) if len(sums) else (0, 0)
        if edges is not pairs:
            engine.release(edges)
        edges = small
        if check == last:
            return edges
        last = check
    raise RuntimeError(f"{what}: connected components did not converge in {MAX_ROUNDS} rounds")  # pragma: no cover


def _no_nodes(df: Any) -> Any:
    import pandas as pd

    return pd.DataFrame({"n": pd.Series([], dtype="int64"), "task": pd.Series([], dtype="int64"),
                         "key": [], "ref": [], "rank": [], "sig": []})


def _no_edges(df: Any) -> Any:
    import pandas as pd

    return pd.DataFrame({"u": pd.Series([], dtype="int64"), "v": pd.Series([], dtype="int64")})
