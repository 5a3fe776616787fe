"""Sample order: a pure function of (seed, epoch, version digest, shard sizes) and a position.

An epoch's order is block-shuffled for locality: the shards are shuffled, then each shard's
samples are shuffled inside it, so a reader streams one shard at a time while consecutive
samples still come from a shuffled sequence. Nothing depends on ranks, workers or timing.
Nothing is materialised for the whole source either: an epoch costs one permutation of the
*shards* (and their cumulative sizes), a shard's inner permutation is drawn when a draw lands
in it, so looking up draw ``k`` is a binary search and 100M samples cost no 760 MiB array.
Generators are seeded from a hash of the inputs; no global RNG is touched.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["SourceOrder", "epoch_order", "rng_for"]


def rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded by a stable hash of ``parts`` (ints, strings, tuples)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


class SourceOrder:
    """Draw ``k`` of a source -> (epoch, global sample index), O(log shards) per draw."""

    def __init__(self, seed: int, digest: str, shard_sizes: Sequence[int], cache_shards: int = 64) -> None:
        self.seed, self.digest = int(seed), str(digest)
        self.sizes = np.asarray(shard_sizes, dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.n = int(self.starts[-1])
        self._epochs: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._inner: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_shards = int(cache_shards)

    def epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        """The shard permutation of epoch ``e`` and the cumulative sizes in that order."""
        got = self._epochs.get(e)
        if got is None:
            perm = rng_for("order", self.seed, e, self.digest).permutation(len(self.sizes))
            cum = np.concatenate([[0], np.cumsum(self.sizes[perm])]).astype(np.int64)
            got = self._epochs[e] = (perm, cum)
            if len(self._epochs) > 4:
                self._epochs.popitem(last=False)
        return got

    def inner(self, e: int, shard: int) -> np.ndarray:
        key = (e, shard)
        got = self._inner.get(key)
        if got is None:
            got = self._inner[key] = rng_for("order", self.seed, e, self.digest, shard).permutation(
                int(self.sizes[shard]))
            if len(self._inner) > self._cache_shards:
                self._inner.popitem(last=False)
        else:
            self._inner.move_to_end(key)
        return got

    def draw(self, k: int) -> tuple[int, int]:
        """Draw ``k`` -> (epoch, global sample index)."""
        e, pos = divmod(int(k), self.n)
        perm, cum = self.epoch(e)
        m = int(np.searchsorted(cum, pos, side="right")) - 1
        shard = int(perm[m])
        return e, int(self.starts[shard]) + int(self.inner(e, shard)[pos - int(cum[m])])

    def shard_span(self, k0: int, k1: int) -> list[tuple[int, int]]:
        """The (epoch, shard) pairs that draws ``[k0, k1)`` touch, in order (no sample work)."""
        out: list[tuple[int, int]] = []
        k = int(k0)
        while k < k1:
            e, pos = divmod(k, self.n)
            perm, cum = self.epoch(e)
            end = min(self.n, pos + (k1 - k))
            m0 = int(np.searchsorted(cum, pos, side="right")) - 1
            m1 = int(np.searchsorted(cum, end - 1, side="right")) - 1
            out += [(e, int(perm[m])) for m in range(m0, m1 + 1)]
            k += end - pos
        return out


@lru_cache(maxsize=16)
def _order(seed: int, epoch: int, digest: str, sizes: tuple[int, ...]) -> np.ndarray:
    so = SourceOrder(seed, digest, sizes, cache_shards=0)
    perm, _ = so.epoch(epoch)
    parts = [so.starts[s] + so.inner(epoch, int(s)) for s in perm]
    order = np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)
    order.setflags(write=False)
    return order


def epoch_order(seed: int, epoch: int, digest: str, shard_sizes: Sequence[int]) -> np.ndarray:
    """The whole order of ``epoch`` (read-only array; for tests and tools -- the loader looks
    draws up one by one through ``SourceOrder``)."""
    return _order(int(seed), int(epoch), str(digest), tuple(int(s) for s in shard_sizes))
