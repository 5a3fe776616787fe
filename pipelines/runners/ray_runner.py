"""Ray Data runner: tasks through ``map_batches``, dedupe inside Ray Data (``pipelines.dedupe_lake``).

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


def _empty(ddl: str) -> Any:
    import pandas as pd

    kinds = {"long": "int64", "int": "int32", "string": "object", "binary": "object"}
    return pd.DataFrame({name: pd.Series([], dtype=kinds[t]) for name, t in (f.split() for f in ddl.split(","))})


def _call(fn: Any, df: Any, schema: str) -> Any:
    out = fn(df) if len(df) else None
    return _empty(schema) if out is None or len(out) == 0 else out


class RayEngine:
    """``pipelines.dedupe_lake.Engine`` on Ray tasks: a dataset is a list of object refs (one
    pandas partition each, in the object store, spilled to disk when large); a shuffle is one
    split task per partition (``num_returns`` = partitions, rows hashed by key) and one reduce
    task per output partition, as Ray Data's hash shuffle does, without its per-execution
    start-up (seconds per step, and connected components take several steps). The driver holds
    refs only."""

    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self._apply = ray.remote(_apply_task)
        self._split = ray.remote(_split_task)
        self._len = ray.remote(_len_task)

    def parallelize(self, inputs: list[Any], fn: Any, schema: str) -> Any:
        return [self._apply.remote(lambda x: _call(lambda _: fn(x), [x], schema), _Boxed(x)) for x in inputs]

    def map(self, ds: Any, fn: Any, schema: str) -> Any:
        return [self._apply.remote(lambda df: _call(fn, df, schema), ref) for ref in ds]

    def shuffle(self, ds: Any, key: str, fn: Any, schema: str, partitions: int) -> Any:
        if not ds:
            return []
        if partitions == 1:
            pieces = [[ref] for ref in ds]
        else:
            pieces = [self._split.options(num_returns=partitions).remote(ref, key, partitions) for ref in ds]
        return [self._apply.remote(lambda *dfs: _call(fn, _concat(dfs), schema), *[p[j] for p in pieces])
                for j in range(partitions)]

    def union(self, *ds: Any) -> Any:
        return [ref for d in ds for ref in d]

    def collect(self, ds: Any) -> Any:
        return _concat(self.ray.get(list(ds)))

    def count(self, ds: Any) -> int:
        return int(sum(self.ray.get([self._len.remote(ref) for ref in ds])))

    def persist(self, ds: Any) -> Any:
        self.ray.wait(list(ds), num_returns=len(ds))  # computed (a failure surfaces at the next get)
        return ds

    def release(self, ds: Any) -> None:
        pass  # objects are freed when no ref is left


class _Boxed:
    """An input passed by value (a bare ``ObjectRef`` argument would be resolved by Ray)."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _apply_task(fn: Any, *args: Any) -> Any:
    return fn(*[a.value if isinstance(a, _Boxed) else a for a in args])


def _len_task(df: Any) -> int:
    return len(df)


def _split_task(df: Any, key: str, partitions: int) -> Any:
    import pandas as pd

    if not len(df):
        return tuple(df for _ in range(partitions))
    h = pd.util.hash_pandas_object(df[key], index=False).to_numpy() % partitions
    return tuple(df[h == j] for j in range(partitions))


def _concat(dfs: Any) -> Any:
    import pandas as pd

    dfs = [d for d in dfs if len(d)]
    return pd.concat(dfs, ignore_index=True) if dfs else pd.DataFrame()


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

    def dedupe(self, job: Any) -> tuple[dict[int, str], dict[str, Any]]:
        from dataclasses import replace

        from pipelines.dedupe_lake import dedupe_on

        cpus = int(self.ray.cluster_resources().get("CPU", 1))
        return dedupe_on(RayEngine(self.ray), replace(job, partitions=max(2, min(64, 2 * cpus))))

    def close(self) -> None:
        pass  # a local Ray is reused by the next job in this process; ray.shutdown() at exit


def check_options(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - {"address", "num_cpus", "object_store_memory"})
    if unknown:
        raise SpecError(f"runner_options {unknown} unknown for ray (address, num_cpus, object_store_memory)")
