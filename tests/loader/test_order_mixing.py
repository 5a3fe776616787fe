"""Order and mixing are pure functions: permutations, no dependence on ranks, tight proportions."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from loader.mixing import Mixer, Schedule
from loader.order import epoch_order


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


def test_fixed_weights_are_realised_within_one_percent() -> None:
    m = Mixer(Schedule.constant([0.7, 0.2, 0.1]))
    picks = np.array(m.take(10_000))
    shares = np.bincount(picks, minlength=3) / 10_000
    assert np.abs(shares - [0.7, 0.2, 0.1]).max() < 0.01
    for n in (100, 1000, 3333):  # any prefix, not just the total
        prefix = np.bincount(picks[:n], minlength=3)
        assert np.abs(prefix - n * np.array([0.7, 0.2, 0.1])).max() <= 1.0


def test_schedule_interpolates_and_resume_with_new_weights_is_deterministic() -> None:
    sched = Schedule.from_points([(0, [1.0, 0.0]), (1000, [0.5, 0.5])])
    assert sched.weights(500) == (0.75, 0.25)
    m = Mixer(sched)
    first = m.take(2000)
    assert sum(first[:100]) <= 6 and abs(sum(first[1000:2000]) - 500) <= 1
    a = Mixer(sched)
    a.take(700)
    state = a.state_dict()
    b = Mixer(sched)
    b.load_state_dict(state)
    assert a.take(500) == b.take(500) == first[700:1200]  # a resume continues identically
    b.set_weights(Schedule.constant([0.25, 0.75]))  # "from here on, these weights"
    c = Mixer(sched)
    c.load_state_dict(state)
    c.take(500)
    c.set_weights(Schedule.constant([0.25, 0.75]))
    assert b.take(400) == c.take(400)
    assert abs(sum(b.take(4000)) / 4000 - 0.75) < 0.01
