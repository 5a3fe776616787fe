"""Dedupe inside the engines (``pipelines.dedupe_lake``): connected components by large-star /
small-star rounds on Ray and Spark equal union-find; engine decisions equal the in-process ones
on chained near-duplicates across tasks and a reference version; the driver gets back counts
and paths, never records."""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from pipelines.dedupe_core import UnionFind
from pipelines.dedupe_lake import (
    EDGE_SCHEMA,
    DedupeJob,
    ItemPart,
    _edges,
    _put,
    _table,
    connected_components,
    dedupe_local,
    dedupe_on,
    write_items,
)


def _engines(ray_runner: Any, spark_runner: Any) -> dict[str, Any]:
    from pipelines.runners.ray_runner import RayEngine
    from pipelines.runners.spark_runner import SparkEngine

    return {"ray": RayEngine(ray_runner.ray), "spark": SparkEngine(spark_runner.spark)}


def test_connected_components_on_ray_and_spark_equal_union_find(ray_runner, spark_runner) -> None:  # type: ignore[no-untyped-def]
    rnd = random.Random(7)
    ids = rnd.sample(range(10_000), 600)
    edges = [(ids[i], ids[i + 1]) for i in range(80)]  # a long path under shuffled ids: many rounds
    edges += [(rnd.choice(ids[100:]), rnd.choice(ids[100:])) for _ in range(300)]
    edges += [(ids[200], ids[201]), (ids[201], ids[200])]  # repeated, both directions
    uf = UnionFind()  # union() keeps the smaller root: find() is the component's smallest node
    for a, b in edges:
        if a != b:
            uf.union(a, b)
    expect = {x: uf.find(x) for x in list(uf.parent)}
    chunks = [edges[i::3] for i in range(3)]
    for name, engine in _engines(ray_runner, spark_runner).items():
        ds = engine.parallelize(chunks, lambda c: _edges(c), EDGE_SCHEMA)
        star = engine.collect(connected_components(engine, ds, 4))
        got = {int(v): int(u) for u, v in zip(star["u"], star["v"], strict=True)}
        got.update({int(u): int(u) for u in star["u"]})
        assert got == expect, name
        assert all(u < v for u, v in zip(star["u"], star["v"], strict=True))


def _chains(rnd: random.Random, n_chains: int, length: int, flips: int) -> list[int]:
    out = []
    for _ in range(n_chains):
        h = rnd.getrandbits(64)
        for _ in range(length):
            out.append(h)
            for b in rnd.sample(range(64), flips):
                h ^= 1 << b
    return out


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[ItemPart], str]:
    """Three tasks of items (pHash chains: neighbours 3 bits apart, so chains longer than
    any cluster may be) and a reference version's signatures table."""
    root = tmp_path_factory.mktemp("dedupe-lake")
    rnd = random.Random(3)
    hashes = _chains(rnd, 12, 8, 3) + [rnd.getrandbits(64) for _ in range(40)]
    rnd.shuffle(hashes)
    out: list[ItemPart] = []
    base = 0
    for task in range(3):
        mine = hashes[task::3]
        items = [(f"t{task}-{i:03d}", (-(i % 5), f"t{task}-{i:03d}"), {"dedupe_image": h}) for i, h in enumerate(mine)]
        uri = f"file://{root}/items-{task}.parquet"
        write_items(uri, items)
        out.append(ItemPart(uri, task, base, "input-a" if task < 2 else "input-b"))
        base += len(items)
    ref = f"file://{root}/ref-signatures.parquet"
    ref_hashes = [hashes[5] ^ 1, hashes[17] ^ 3]  # near items of the tasks: those items go
    _put(ref, _parquet_bytes([f"r{i}" for i in range(2)], [{"dedupe_image": h} for h in ref_hashes]))
    out.append(ItemPart(ref, -1, base, "refs@1"))
    return out, str(root)


def _parquet_bytes(keys: list[str], sigs: list[dict[str, Any]]) -> bytes:
    import io

    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"key": keys, "sigs": pa.array([pickle.dumps(s) for s in sigs], pa.binary())}), buf)
    return buf.getvalue()


def _decisions(files: dict[int, str]) -> set[tuple[int, str, str, str, str]]:
    out = set()
    for task, uri in files.items():
        t = _table(uri).to_pydict()
        out.update((task, k, t["stage"][i], t["detail"][i], t["duplicate_of"][i]) for i, k in enumerate(t["key"]))
    return out


def test_engine_decisions_equal_in_process_ones(parts, ray_runner, spark_runner) -> None:  # type: ignore[no-untyped-def]
    items, root = parts
    stage = ("dedupe_image", {"max_hamming": 4, "max_colour_distance": None})
    runs = {"local": dedupe_local(DedupeJob(stage, tuple(items), f"file://{root}/local/dups"))}
    for name, engine in _engines(ray_runner, spark_runner).items():
        runs[name] = dedupe_on(engine, DedupeJob(stage, tuple(items), f"file://{root}/{name}/dups", partitions=3))
    local = _decisions(runs["local"][0])
    assert len(local) >= 20 and runs["local"][1]["duplicates"] >= len(local)
    for name in ("ray", "spark"):
        assert _decisions(runs[name][0]) == local, name
        assert runs[name][1] == runs["local"][1], name
    # stars, not chains: every duplicate is within max_hamming of the item it is dropped for
    sig = {}
    for p in items:
        t = _table(p.uri).to_pydict()
        for k, s in zip(t["key"], t["sigs"], strict=True):
            sig[k if p.task >= 0 else f"{p.ref}/{k}"] = pickle.loads(s)["dedupe_image"]
    for _task, key, _stage, detail, of in local:
        keeper = of if of in sig else of.split("/", 1)[1]  # another input's key is qualified by its input
        assert bin(sig[key] ^ sig[keeper]).count("1") <= 4, (key, of, detail)
    assert any(of.startswith("refs@1/") for *_, of in local)  # the reference version's items win
    assert any(of.startswith("input-") for *_, of in local)  # across inputs: qualified by the input


def test_a_later_stage_skips_what_an_earlier_one_removed(parts) -> None:  # type: ignore[no-untyped-def]
    items, root = parts
    stage = ("dedupe_image", {"max_hamming": 4, "max_colour_distance": None})
    first, _ = dedupe_local(DedupeJob(stage, tuple(items), f"file://{root}/first/dups"))
    removed = {k for _t, k, *_ in _decisions(first)}
    later = [ItemPart(p.uri, p.task, p.base, p.ref, (first[p.task],) if p.task in first else ()) for p in items]
    again, stats = dedupe_local(DedupeJob(stage, tuple(later), f"file://{root}/again/dups"))
    assert removed and not {k for _t, k, *_ in _decisions(again)} & removed


def test_tasks_return_counts_and_paths_not_rows(tmp_path: Path) -> None:
    """What a pass returns to the driver does not grow with the task: its rows are in the lake."""
    from datalake import Lake, LocalStore
    from pipelines.run import run_pipeline
    from pipelines.spec import parse_spec
    from registry.service import Registry

    from .conftest import SPEC, make_corpus

    raw = tmp_path / "raw"
    n = make_corpus(raw)
    sizes: list[int] = []
    keys: set[str] = set()

    def on_pass(_k: int, results: list[dict[str, Any]]) -> None:
        for r in results:
            sizes.append(len(pickle.dumps(r)))
            keys.update(r)

    lake = Lake(LocalStore(tmp_path / "lake"))
    reg = Registry(f"sqlite:///{tmp_path / 'registry.db'}")
    spec = parse_spec({**SPEC, "input": str(raw), "partition_size": 1000})  # one task holds every sample
    out = run_pipeline(spec, lake, reg, progress=False, on_pass=on_pass)
    assert out["samples_in"] == n > 60 and out["duplicates"] >= 30
    assert max(sizes) < 4096  # counts by reason, part paths, one shard's info
    assert "outcomes" not in keys and "scores" not in keys
    v = reg.open_version(out["output"])
    # the tasks' parts merged into one rejects table (the raw files ingest rejected are in the ingest's)
    assert v.manifest.rejects["count"] == n - out["kept"] - sum(out["ingest"]["rejected"].values())
    left = [p for p in lake.dataset_store(spec.output).list("shards") if "/parts/" in p or "/items-" in p]
    assert not left  # the tasks' parts and items are gone once the version is committed
    reg.close()
