"""Candidate pairs from band groups, verified, joined into clusters by union-find.

``verify_group`` is the only function an engine runs per group (Ray ``map_groups``, Spark
``applyInPandas``, or a dict in-process), so all engines find the same pairs. Inside a
group, items with identical signatures are linked as a star first (identical signatures are
always duplicates); the remaining distinct signatures are compared pairwise, or as a star for
transitive stages (exact hashes). Clusters are connected components for
transitive stages and stars around a representative for the others (``clusters``), the same
whatever the grouping.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from pipelines.stage import DedupeStage, Record

__all__ = ["verify_group", "find_pairs", "clusters", "UnionFind"]


def verify_group(stage: DedupeStage, records: Sequence[Record]) -> list[tuple[int, int]]:
    keys = sorted((r for r in records if r.role == "key"), key=lambda r: r.item)
    probes = sorted((r for r in records if r.role == "probe"), key=lambda r: r.item)
    # identical signatures among the keys: verified once, through their first item
    first: dict[Any, int] = {}
    same: dict[int, list[int]] = {}
    reps: list[Record] = []
    for r in keys:
        k = r.payload if isinstance(r.payload, (str, int, bytes)) else repr(r.payload)
        if k in first:
            same[first[k]].append(r.item)
        else:
            first[k] = r.item
            same[r.item] = []
            reps.append(r)
    if stage.transitive:  # an equivalence: stars are enough for connected components
        pairs = [(rep, x) for rep, xs in same.items() for x in xs]
        pairs.extend((reps[0].item, r.item) for r in reps[1:] if stage.verify(reps[0].payload, r.payload))
        return pairs
    rp: list[tuple[int, int]] = []  # verified pairs between distinct signatures
    block = getattr(stage, "verify_block", None)
    items = [r.item for r in reps]
    if block is not None and len(reps) + len(probes) > 64:  # big groups: vectorised all-pairs
        rp.extend((items[a], items[b]) for a, b in block([r.payload for r in reps], None))
        if probes:
            rp.extend((probes[p].item, items[r]) for p, r in block([p.payload for p in probes],
                                                                    [r.payload for r in reps]))
    else:
        for i, a in enumerate(reps):
            for b in reps[i + 1:]:
                if stage.verify(a.payload, b.payload):
                    rp.append((a.item, b.item))
        for p in probes:  # probes look for keys within a radius (multi-index hashing)
            rp.extend((p.item, r.item) for r in reps if stage.verify(p.payload, r.payload))
    # items with one signature are one point: each is paired with all the others and with
    # everything that point is near (stars around a representative then see all of them)
    out = {(min(x, y), max(x, y)) for rep, xs in same.items() for x in [rep, *xs] for y in xs if x != y}
    for a, b in rp:
        if a == b:
            continue
        for x in [a, *same.get(a, ())]:
            for y in [b, *same.get(b, ())]:
                if x != y:
                    out.add((min(x, y), max(x, y)))
    return sorted(out)


def find_pairs(stage: DedupeStage, records: Iterable[Record]) -> set[tuple[int, int]]:
    """All verified pairs, grouping in-process."""
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[r.group].append(r)
    out: set[tuple[int, int]] = set()
    for rs in groups.values():
        if len(rs) > 1:
            out.update(verify_group(stage, rs))
    return out


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        self.parent.setdefault(x, x)
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def clusters(pairs: Iterable[tuple[int, int]], rank: dict[int, Any], transitive: bool = True) -> dict[int, int]:
    """item -> the item it duplicates (its cluster's representative, smallest rank); the
    representatives themselves are absent.

    ``transitive`` (exact hashes: duplicates of duplicates are duplicates) joins connected
    components. Otherwise clusters are stars: items are visited best rank first; an item not yet
    claimed becomes a representative and claims its unclaimed verified neighbours. Every member
    is then a verified pair with its representative -- a chain a~b~c of near pairs never puts a
    and c in one cluster unless they are near themselves. Pure function of the pairs and ranks,
    so every engine gets the same clusters."""
    if not transitive:
        adj: dict[int, list[int]] = defaultdict(list)
        for a, b in pairs:
            if a != b:
                adj[a].append(b)
                adj[b].append(a)
        out: dict[int, int] = {}
        leaders: set[int] = set()
        for x in sorted(adj, key=lambda i: (rank[i], i)):
            if x in out:
                continue
            leaders.add(x)
            for y in adj[x]:
                if y not in out and y not in leaders:
                    out[y] = x
        return out
    uf = UnionFind()
    for a, b in pairs:
        uf.union(a, b)
    members: dict[int, list[int]] = defaultdict(list)
    for x in list(uf.parent):
        members[uf.find(x)].append(x)
    out = {}
    for group in members.values():
        keeper = min(group, key=lambda i: rank[i])
        out.update({i: keeper for i in group if i != keeper})
    return out
