"""Sample order: a pure function of (seed, epoch, version digest, shard sizes) and a position.

An epoch's order is block-shuffled for locality: the shards are shuffled, then each shard's
samples are shuffled inside it, so a reader streams one shard at a time while consecutive
samples still come from a shuffled sequence. Nothing depends on ranks, workers or timing,
so ``epoch_order(...)[p]`` is the same on every machine and resuming at position ``p`` is a
seek. Generators are seeded from a hash of the inputs; no global RNG is touched.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

__all__ = ["epoch_order", "rng_for"]


def rng_for(*parts: object) -> np.random.Generator:
    """A generator seeded by a stable hash of ``parts`` (ints, strings, tuples)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


@lru_cache(maxsize=64)
def _order(seed: int, epoch: int, digest: str, sizes: tuple[int, ...]) -> np.ndarray:
    rng = rng_for("order", seed, epoch, digest)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    out = []
    for shard in rng.permutation(len(sizes)):
        out.append(starts[shard] + rng.permutation(sizes[shard]))
    order = np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
    order.setflags(write=False)
    return order


def epoch_order(seed: int, epoch: int, digest: str, shard_sizes: Sequence[int]) -> np.ndarray:
    """The global sample indices of a version in the order of ``epoch`` (read-only array)."""
    return _order(int(seed), int(epoch), str(digest), tuple(int(s) for s in shard_sizes))
