"""Property tests of the stream plan (lanes, rank slices, exactly-once merges, bounded state)
and of the packer."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from loader.mixing import Schedule
from loader.packing import BestFitPacker
from loader.plan import RankPlan, Stream, decode_cursors, encode_cursors, items_below, lanes_of, merge_states


def _consume(stream: Stream, cursors: dict, prefix: list, rank: int, world: int, n: int, pending: int
             ) -> tuple[list, dict]:
    """Rank ``rank`` takes ``n`` elements and holds the last ``pending`` of them unpacked."""
    items, cur, used = [], dict(cursors), 0
    for j, (item, lane, nxt) in enumerate(RankPlan(stream, cursors, prefix)):
        if j == n:
            break
        items.append(item)
        if lane is None:
            used += 1
        else:
            cur[lane] = nxt
    pending = min(pending, len(items))
    state = {"rank": rank, "world_size": world, "stream": stream.to_json(), "cursors": encode_cursors(cur),
             "prefix": [list(p) for p in prefix[used:]], "pending": [list(p) for p in items[len(items) - pending:]]}
    return items[: len(items) - pending], state


@settings(max_examples=60, deadline=None)
@given(worlds=st.lists(st.integers(1, 6), min_size=1, max_size=4),
       takes=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 4)), min_size=20, max_size=20),
       weights=st.lists(st.floats(0.1, 1.0), min_size=2, max_size=3), new_weights=st.booleans())
def test_any_sequence_of_world_sizes_delivers_each_item_once_and_loses_none(
        worlds: list[int], takes: list[tuple[int, int]], weights: list[float], new_weights: bool) -> None:
    stream = Stream.fresh(Schedule.constant(weights), [7] * len(weights), lanes=6, turn=8)
    delivered: list[tuple[int, int]] = []
    t = iter(takes * 3)
    cursors, prefix, world = {lane: 0 for lane in range(6)}, [], 1
    states = []
    for world in worlds:
        states = []
        for r in range(world):
            mine = {lane: cursors[lane] for lane in lanes_of(r, world, 6)}
            n, p = next(t)
            got, state = _consume(stream, mine, prefix[r::world], r, world, n, p)
            delivered += got
            states.append(json.loads(json.dumps(state)))
        sched = Schedule.constant(weights[::-1]) if new_weights else None
        stream, cursors, prefix = merge_states(states, schedule=sched)
    counts = Counter(delivered)
    assert not counts or max(counts.values()) == 1  # nothing twice
    # nothing lost: what the lanes gave out is exactly what was delivered plus what is pending
    assert Counter(items_below(stream, cursors)) == counts + Counter(prefix)
    for s in range(len(weights)):  # the items are distinct draws of each source
        ks = [k for src, k in delivered if src == s]
        assert len(ks) == len(set(ks))


def test_ranks_own_contiguous_lanes_and_plans_are_pure_and_seek() -> None:
    assert [list(lanes_of(r, 3, 8)) for r in range(3)] == [[0, 1], [2, 3, 4], [5, 6, 7]]
    stream = Stream.fresh(Schedule.constant([0.5, 0.5]), [10, 10], lanes=8, turn=4)
    a = [x for _, x in zip(range(50), RankPlan(stream, {2: 0, 3: 0}), strict=False)]
    again = Stream.from_json(json.loads(json.dumps(stream.to_json())))
    assert a == [x for _, x in zip(range(50), RankPlan(again, {2: 0, 3: 0}), strict=False)]
    assert [lane for _, lane, _ in a[:12]] == [2] * 4 + [3] * 4 + [2] * 4  # turns of 4 positions
    cur = {2: 0, 3: 0}
    for _, lane, nxt in a[:21]:
        cur[lane] = nxt
    rest = [x for _, x in zip(range(29), RankPlan(stream, cur), strict=False)]
    assert rest == a[21:]  # resuming from the cursors is a seek: the same items as walking on


def test_state_stays_small_after_resizes() -> None:
    """512 -> 384 -> 512 ranks over 4096 lanes: cursors run-length encode, pending is dealt out."""
    stream = Stream.fresh(Schedule.constant([0.6, 0.4]), [1000, 1000], lanes=4096, turn=64)
    cursors = {lane: 1000 + (lane % 8 == 0) * 64 for lane in range(4096)}
    states = [{"rank": r, "world_size": 512, "stream": stream.to_json(),
               "cursors": encode_cursors({lane: cursors[lane] for lane in lanes_of(r, 512, 4096)}),
               "prefix": [], "pending": [[0, 10**9 + r * 40 + i] for i in range(40)]} for r in range(512)]
    stream2, cur2, prefix = merge_states(states)
    assert cur2 == cursors and len(prefix) == 512 * 40
    for world in (384, 512):
        for r in (0, world - 1):
            mine = {lane: cur2[lane] for lane in lanes_of(r, world, 4096)}
            state = {"stream": stream2.to_json(), "cursors": encode_cursors(mine), "prefix": prefix[r::world]}
            assert len(json.dumps(state)) < 64 * 1024
            assert decode_cursors(state["cursors"]) == mine


def test_best_fit_fill_at_8192() -> None:
    class Item:
        def __init__(self, n: int) -> None:
            self.n = n

        def __len__(self) -> int:
            return self.n

    rng = np.random.default_rng(0)
    lengths = np.clip(rng.lognormal(6.0, 0.8, 20_000), 16, 8192).astype(int)  # ~400 tokens, long tail
    packer: BestFitPacker[Item] = BestFitPacker(8192, 64)
    used = rows = 0
    it = iter(lengths)
    for _ in range(500):
        while not packer.full:
            packer.add(Item(int(next(it))))
        row = packer.row()
        assert sum(len(x) for x in row) <= 8192
        used += sum(len(x) for x in row)
        rows += 1
    assert used / (rows * 8192) >= 0.99


def test_512_to_384_to_512_ranks_deliver_each_item_once() -> None:
    """The cluster case simulated: 4096 lanes, ranks taking uneven amounts, packers holding some."""
    stream = Stream.fresh(Schedule.constant([0.6, 0.3, 0.1]), [50, 50, 50], lanes=4096, turn=4)
    rng = np.random.default_rng(3)
    cursors, prefix = {lane: 0 for lane in range(4096)}, []
    delivered: list[tuple[int, int]] = []
    for world in (512, 384, 512):
        states = []
        for r in range(world):
            mine = {lane: cursors[lane] for lane in lanes_of(r, world, 4096)}
            got, state = _consume(stream, mine, prefix[r::world], r, world, int(rng.integers(0, 30)),
                                  int(rng.integers(0, 4)))
            delivered += got
            states.append(state)
        stream, cursors, prefix = merge_states(states)
    counts = Counter(delivered)
    assert max(counts.values()) == 1
    assert Counter(items_below(stream, cursors)) == counts + Counter(prefix)
