"""Candidate pairs from band groups, verified, joined into clusters by union-find.

``verify_group`` is the only function an engine runs per group (Ray ``map_groups``, Spark
``applyInPandas``, or a dict in-process), so all engines find the same pairs. Inside a
group, items with identical signatures are linked as a star first (identical signatures are
always duplicates); the remaining distinct signatures are compared pairwise, or as a star for
transitive stages (exact hashes). Connected components are then the same whatever the
grouping, and ``clusters`` picks each cluster's keeper by rank.
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
    pairs: list[tuple[int, int]] = []
    # identical signatures among the keys: a star
    first: dict[Any, int] = {}
    reps: list[Record] = []
    for r in keys:
        k = r.payload if isinstance(r.payload, (str, int, bytes)) else repr(r.payload)
        if k in first:
            pairs.append((first[k], r.item))
        else:
            first[k] = r.item
            reps.append(r)
    if stage.transitive:
        pairs.extend((reps[0].item, r.item) for r in reps[1:] if stage.verify(reps[0].payload, r.payload))
    else:
        for i, a in enumerate(reps):
            for b in reps[i + 1:]:
                if stage.verify(a.payload, b.payload):
                    pairs.append((a.item, b.item))
    for p in probes:  # probes look for keys within a radius (multi-index hashing)
        for r in reps:
            if r.item != p.item and stage.verify(p.payload, r.payload):
                pairs.append((min(p.item, r.item), max(p.item, r.item)))
    return pairs


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


def clusters(pairs: Iterable[tuple[int, int]], rank: dict[int, Any]) -> dict[int, int]:
    """item -> the item it duplicates (its cluster's keeper, smallest rank); keepers absent."""
    uf = UnionFind()
    for a, b in pairs:
        uf.union(a, b)
    members: dict[int, list[int]] = defaultdict(list)
    for x in list(uf.parent):
        members[uf.find(x)].append(x)
    out: dict[int, int] = {}
    for group in members.values():
        keeper = min(group, key=lambda i: rank[i])
        out.update({i: keeper for i in group if i != keeper})
    return out
