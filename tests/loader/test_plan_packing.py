"""Property tests of the stream planner (rank slices, exactly-once merges) and of the packer."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from loader.packing import BestFitPacker
from loader.plan import Planner, Snapshot, StreamDef, merge_states


def _consume(stream: StreamDef, rank: int, world: int, n: int, pending: int) -> tuple[list, dict]:
    """Rank ``rank`` takes ``n`` elements and holds the last ``pending`` of them unpacked."""
    items, nxt = [], Snapshot(0)
    for j, (snap, item) in enumerate(Planner(stream, rank, world)):
        if j == n:
            nxt = snap
            break
        items.append(item)
    pending = min(pending, len(items))
    state = {"rank": rank, "world_size": world, "stream": stream.to_json(), "next": nxt.to_json(),
             "pending": [list(p) for p in items[len(items) - pending:]]}
    return items[: len(items) - pending], state


@settings(max_examples=60, deadline=None)
@given(worlds=st.lists(st.integers(1, 5), min_size=1, max_size=4),
       takes=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 4)), min_size=20, max_size=20),
       weights=st.lists(st.floats(0.1, 1.0), min_size=2, max_size=3))
def test_any_sequence_of_world_sizes_delivers_each_draw_once(worlds: list[int], takes: list[tuple[int, int]],
                                                             weights: list[float]) -> None:
    stream = StreamDef([[0, weights]])
    delivered: list[tuple[int, int]] = []
    t = iter(takes * 3)
    for world in worlds:
        states = []
        for r in range(world):
            n, p = next(t)
            got, state = _consume(stream, r, world, n, p)
            delivered += got
            states.append(state)
        stream = merge_states(states)
    got, _ = _consume(stream, 0, 1, 400, 0)
    delivered += got
    counts = Counter(delivered)
    assert max(counts.values()) == 1
    for s in range(len(weights)):  # no gaps: each source's draws are exactly 0..m-1
        ks = sorted(k for src, k in delivered if src == s)
        assert ks == list(range(len(ks)))


def test_rank_slices_interleave_and_snapshots_seek() -> None:
    stream = StreamDef([[0, [0.5, 0.5]]])
    it = iter(Planner(stream, 0, 1))
    everything = [next(it)[1] for _ in range(30)]
    for world in (2, 3):
        for r in range(world):
            it = iter(Planner(stream, r, world))
            mine = [next(it)[1] for _ in range(30 // world)]
            assert mine == everything[r::world][: 30 // world]
    # a snapshot resumes the planner exactly where it was, without replaying
    it = iter(Planner(stream, 1, 3))
    for _ in range(5):
        snap, _item = next(it)
    rest = [next(it)[1] for _ in range(4)]
    again = iter(Planner(stream, 1, 3, snap))
    assert [next(again)[1] for _ in range(5)] == [_item] + rest


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
