"""Order and mixing are pure functions: permutations, no dependence on ranks, tight proportions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from loader.mixing import Schedule, Segment, block_table
from loader.order import SourceOrder, epoch_order


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.integers(0, 2**31), st.integers(0, 50))
def test_every_epoch_is_a_permutation(sizes: list[int], seed: int, epoch: int) -> None:
    order = epoch_order(seed, epoch, "sha256:abc", sizes)
    assert sorted(order.tolist()) == list(range(sum(sizes)))
    assert np.array_equal(order, epoch_order(seed, epoch, "sha256:abc", sizes))  # pure


def test_orders_differ_by_seed_epoch_and_version_and_stream_shard_by_shard() -> None:
    sizes = [100] * 8
    a = epoch_order(0, 0, "d1", sizes)
    assert not np.array_equal(a, epoch_order(1, 0, "d1", sizes))
    assert not np.array_equal(a, epoch_order(0, 1, "d1", sizes))
    assert not np.array_equal(a, epoch_order(0, 0, "d2", sizes))
    shards = a // 100
    assert all(len(set(shards[i * 100:(i + 1) * 100].tolist())) == 1 for i in range(8))  # block-shuffled
    assert a[:100].tolist() != sorted(a[:100].tolist())  # shuffled inside the block


def test_rank_slices_partition_the_global_sequence() -> None:
    order = epoch_order(7, 3, "d", [50, 30, 20])
    for world in (1, 2, 3, 4):
        slices = [order[r::world] for r in range(world)]
        assert sorted(np.concatenate(slices).tolist()) == list(range(100))


def _mix(sched: Schedule, n: int, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    seg = Segment(0, sched, (0,) * sched.n_sources)
    parts = [block_table(seg, lo, min(n, lo + block)) for lo in range(0, n, block)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def test_fixed_weights_are_realised_within_one_sample_in_any_prefix() -> None:
    w = np.array([0.7, 0.2, 0.1])
    picks, ks = _mix(Schedule.constant(w), 10_000)
    for s in range(3):  # each source's draw numbers are 0, 1, 2, ... in order, none skipped
        assert ks[picks == s].tolist() == list(range(int((picks == s).sum())))
    for n in (100, 1000, 3333, 10_000):
        assert np.abs(np.bincount(picks[:n], minlength=3) - n * w).max() <= 1.0
    window = np.cumsum(np.eye(3)[picks], 0)
    err = np.abs(window[500:] - window[:-500] - 500 * w).max()
    assert err <= 2.5  # any window of 500, not just prefixes


def test_counts_are_a_pure_monotone_function_of_the_position() -> None:
    """counts(h) is computed without walking 0..h, never decreases and sums to h -- also far out."""
    sched = Schedule.from_points([(0, [1.0, 0.0, 0.0]), (10**6, [0.2, 0.3, 0.5])])
    seg = Segment(0, sched, (0, 0, 0))
    for h in (0, 1, 10, 999_999, 10**6, 10**6 + 1, 10**9, 10**12):
        c, c1 = seg.counts(h), seg.counts(h + 1)
        assert c.sum() == h and c1.sum() == h + 1 and (c1 >= c).all()
    for h in (10**6 + 7, 10**12):  # within one sample of the quota (the ramp's integral, then w * h)
        quota = np.array([6e5, 1.5e5, 2.5e5]) + (h - 10**6) * np.array([0.2, 0.3, 0.5])
        assert np.abs(seg.counts(h) - quota).max() <= 1.0


def test_schedule_interpolates_and_a_new_segment_starts_from_the_counts_so_far() -> None:
    sched = Schedule.from_points([(0, [1.0, 0.0]), (1000, [0.5, 0.5])])
    assert sched.weights(500) == (0.75, 0.25)
    picks, _ = _mix(sched, 2000)
    assert picks[:100].sum() <= 6 and abs(int(picks[1000:2000].sum()) - 500) <= 1
    seg = Segment(0, sched, (0, 0))
    draws = tuple(int(v) for v in seg.counts(1200))
    new = Segment(1200, Schedule.constant([0.25, 0.75]), draws)
    srcs, ks = block_table(new, 1200, 5200)
    assert abs(srcs.mean() - 0.75) < 0.001
    for s in (0, 1):  # the new segment's draws continue the old ones: no gap, no repeat
        assert ks[srcs == s][0] == draws[s]


def test_source_order_matches_the_epoch_order_and_spans_shards() -> None:
    sizes = [30, 50, 20, 40]
    so = SourceOrder(5, "d", sizes)
    for e in (0, 3):
        full = epoch_order(5, e, "d", sizes)
        assert [so.draw(e * 140 + p)[1] for p in range(140)] == full.tolist()
    starts = np.cumsum([0] + sizes)
    touched = so.shard_span(25, 95)  # draws 25..94 of epoch 0
    shards = {int(np.searchsorted(starts, i, side="right")) - 1 for i in epoch_order(5, 0, "d", sizes)[25:95]}
    assert {s for _, s in touched} == shards
