"""Dedupe at scale: the engines carry the records, the driver stays flat.

Synthetic corpora of N small items (64-bit perceptual hashes, as ``dedupe_image`` stores them;
a share of them planted near-copies 1-3 bits from a base item) are written to a local lake as
task parts of the size a pipeline pass writes (``pass<k>/items-<task>.parquet``), then one
``dedupe_image`` job (``pipelines.dedupe_lake``) runs on each runner. For each (runner, N):
wall time, the driver's peak RSS over its RSS before the job, the engine's peak RSS (every
process under the driver: Ray's raylet and workers, Spark's JVM and Python workers), and
precision / recall of the decisions against the planted copies.

    python benchmarks/scale.py                                   # 100k and 300k, all runners
    python benchmarks/scale.py --sizes 1000000 --runners spark
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipelines.dedupe_lake import DedupeJob, ItemPart, _table, dedupe_local, dedupe_on, write_items  # noqa: E402


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


class Peak(threading.Thread):
    """Samples the driver's and its descendants' RSS every 50 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.driver = self.engine = 0
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.is_set():
            self.driver = max(self.driver, _rss(me))
            self.engine = max(self.engine, sum(_rss(c) for c in _children(me)))
            self.stop.wait(0.05)


def corpus(root: Path, n: int, tasks: int, share: float, seed: int) -> tuple[list[ItemPart], dict[str, str]]:
    """Task parts with ``share`` of the items planted copies; returns parts and copy -> base."""
    rnd = random.Random(seed)
    bases = n - int(n * share)
    hashes = [rnd.getrandbits(64) for _ in range(bases)]
    keys = [f"b{i:08d}" for i in range(bases)]
    planted: dict[str, str] = {}
    for j in range(n - bases):
        b = rnd.randrange(bases)
        h = hashes[b]
        for bit in rnd.sample(range(64), rnd.randint(1, 3)):
            h ^= 1 << bit
        keys.append(f"c{j:08d}")
        hashes.append(h)
        planted[keys[-1]] = keys[b]
    order = list(range(n))
    rnd.shuffle(order)
    parts, base = [], 0
    per = -(-n // tasks)
    for t in range(tasks):
        idx = order[t * per:(t + 1) * per]
        # rank: copies rank after bases, so the planted base is the one kept
        items = [(keys[i], (int(keys[i][0] == "c"), keys[i]), {"dedupe_image": hashes[i]}) for i in idx]
        uri = f"file://{root}/items-{t:05d}.parquet"
        write_items(uri, items)
        parts.append(ItemPart(uri, t, base, "input"))
        base += len(items)
    return parts, planted


def score(files: dict[int, str], planted: dict[str, str]) -> tuple[float, float]:
    """Precision: dropped items that are planted copies of the same base as their keeper (or
    copies of the keeper); recall: planted copies dropped."""
    dropped = {}
    for uri in files.values():
        t = _table(uri).to_pydict()
        dropped.update(zip(t["key"], t["duplicate_of"], strict=True))
    root = {k: planted.get(k, k) for k in set(dropped) | set(dropped.values())}
    good = sum(1 for k, of in dropped.items() if k in planted and root[k] == root[of])
    return good / max(1, len(dropped)), sum(1 for k in planted if k in dropped) / max(1, len(planted))


def make_engine(name: str) -> tuple[Any, Any]:
    if name == "ray":
        from pipelines.runners.ray_runner import RayEngine, RayRunner

        r = RayRunner(num_cpus=os.cpu_count() or 2, object_store_memory=2 * 1024 ** 3)
        return RayEngine(r.ray), r
    from pipelines.runners.spark_runner import SparkEngine, SparkRunner

    r = SparkRunner()
    return SparkEngine(r.spark), r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,300000", help="comma-separated corpus sizes")
    ap.add_argument("--runners", default="local,ray,spark")
    ap.add_argument("--items-per-task", type=int, default=5000)
    ap.add_argument("--share", type=float, default=0.1, help="share of planted near-copies")
    ap.add_argument("--max-hamming", type=int, default=3)
    args = ap.parse_args()
    stage = ("dedupe_image", {"max_hamming": args.max_hamming, "max_colour_distance": None})
    rows = []
    for name in args.runners.split(","):
        engine = runner = None
        if name != "local":
            engine, runner = make_engine(name)
        for n in [int(x) for x in args.sizes.split(",")]:
            with tempfile.TemporaryDirectory() as tmp:
                parts, planted = corpus(Path(tmp), n, max(1, n // args.items_per_task), args.share, seed=n)
                job = DedupeJob(stage, tuple(parts), f"file://{tmp}/dups", partitions=2 * (os.cpu_count() or 2))
                before = _rss(os.getpid())
                peak = Peak()
                peak.start()
                t0 = time.perf_counter()
                files, stats = dedupe_local(job) if engine is None else dedupe_on(engine, job)
                wall = time.perf_counter() - t0
                peak.stop.set()
                peak.join()
                p, r = score(files, planted)
                rows.append((name, n, wall, (peak.driver - before) / 2 ** 20, peak.engine / 2 ** 20, p, r,
                             stats["duplicates"]))
                print(f"{name:6} {n:>9,}  {wall:7.1f} s  driver +{rows[-1][3]:7.1f} MiB  engine {rows[-1][4]:7.0f} MiB"
                      f"  P {p:.4f}  R {r:.4f}", flush=True)
        if runner is not None:
            getattr(runner, "spark", None) and runner.spark.stop()
            if name == "ray":
                import ray

                ray.shutdown()
    print("\n| runner | items | wall s | driver peak RSS over start (MiB) | engine peak RSS (MiB) | precision | recall | duplicates |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, n, wall, drv, eng, p, r, d in rows:
        print(f"| {name} | {n:,} | {wall:.1f} | {drv:.1f} | {eng:.0f} | {p:.4f} | {r:.4f} | {d:,} |")


if __name__ == "__main__":
    main()
