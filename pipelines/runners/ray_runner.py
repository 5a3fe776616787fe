"""Ray Data runner: tasks through ``map_batches``, dedupe bands through ``groupby().map_groups``.

``ray.init()`` starts a local Ray by default (``num_cpus``, a bounded object store, no
dashboard); ``address: auto`` or ``ray://host:10001`` joins a cluster. Tasks and records
travel pickled in binary columns; samples are read from the lake by the workers themselves.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from pipelines.stage import SpecError


def _run_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    fn = pickle.loads(batch["fn"][0])
    out = [pickle.dumps(fn(pickle.loads(t))) for t in batch["task"]]
    return {"i": batch["i"], "result": np.array(out, dtype=object)}


def _verify_blocks(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A hash-partitioned block holds whole groups: group in memory, verify each."""
    from collections import defaultdict

    from pipelines.dedupe_core import verify_group
    from pipelines.stage import build_stage

    stage = build_stage(*pickle.loads(batch["stage"][0])) if len(batch["stage"]) else None
    groups: dict[str, list[Any]] = defaultdict(list)
    for g, r in zip(batch["g"], batch["rec"], strict=True):
        groups[g].append(pickle.loads(r))
    pairs = [p for recs in groups.values() if len(recs) > 1 for p in verify_group(stage, recs)]  # type: ignore[arg-type]
    return {"a": np.array([p[0] for p in pairs], dtype=np.int64), "b": np.array([p[1] for p in pairs], dtype=np.int64)}


class RayRunner:
    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 object_store_memory: int = 256 * 1024 * 1024) -> None:
        import ray

        address = address or os.environ.get("RAY_ADDRESS")  # set when running as a Ray job
        if not ray.is_initialized():
            if address:
                ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus or min(4, os.cpu_count() or 1), include_dashboard=False,
                         object_store_memory=object_store_memory, ignore_reinit_error=True, log_to_driver=False,
                         runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith(("MMLAKE_", "AWS_"))}})
        import logging

        for name in ("ray", "ray.data", "ray._private"):
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            ctx = ray.data.DataContext.get_current()
            ctx.enable_progress_bars = False
        except AttributeError:  # pragma: no cover - older Ray
            pass
        self.ray = ray

    def map_tasks(self, fn: Any, tasks: list[Any], desc: str = "") -> list[Any]:
        if not tasks:
            return []
        fn_b = pickle.dumps(fn)
        items = [{"i": i, "task": pickle.dumps(t), "fn": fn_b} for i, t in enumerate(tasks)]
        ds = self.ray.data.from_items(items, override_num_blocks=len(items))
        rows = ds.map_batches(_run_batch, batch_size=1, zero_copy_batch=False).take_all()
        rows.sort(key=lambda r: r["i"])
        return [pickle.loads(r["result"]) for r in rows]

    def find_pairs(self, stage: tuple[str, dict[str, Any]], records: list[Any]) -> set[tuple[int, int]]:
        if not records:
            return set()
        st = pickle.dumps(stage)
        ds = self.ray.data.from_items([{"g": r.group, "rec": pickle.dumps(r), "stage": st} for r in records])
        parts = max(1, min(64, len(records) // 20000 + int(self.ray.cluster_resources().get("CPU", 1))))
        # hash-partition by band: every group lands whole in one block, verified in one call
        rows = (ds.repartition(parts, keys=["g"]).map_batches(_verify_blocks, batch_size=None, batch_format="numpy")
                .take_all())
        return {(int(r["a"]), int(r["b"])) for r in rows}

    def close(self) -> None:
        pass  # a local Ray is reused by the next job in this process; ray.shutdown() at exit


def check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - {"address", "num_cpus", "object_store_memory"})
    if unknown:
        raise SpecError(f"runner_options {unknown} unknown for ray (address, num_cpus, object_store_memory)")
