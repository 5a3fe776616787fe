"""Spark runner: tasks through ``mapInPandas``, dedupe inside Spark (``pipelines.dedupe_lake``).

``local[N]`` by default, or ``master: spark://host:7077`` (or ``MMLAKE_SPARK_MASTER``). Tasks and records travel pickled in
binary columns; workers read samples from the lake themselves (no S3A jars needed).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from typing import Any


def _run_partition(frames: Iterator[Any]) -> Iterator[Any]:
    import pandas as pd

    for df in frames:
        out = []
        for i, task, fn in zip(df["i"], df["task"], df["fn"], strict=True):
            out.append((i, pickle.dumps(pickle.loads(fn)(pickle.loads(task)))))
        yield pd.DataFrame(out, columns=["i", "result"])


def _whole(frames: Iterator[Any], fn: Any) -> Iterator[Any]:
    """One call per partition with all its rows (a hash partition holds whole keys)."""
    import pandas as pd

    batches = [f for f in frames if len(f)]
    if batches:
        yield fn(pd.concat(batches, ignore_index=True))


class SparkEngine:
    """``pipelines.dedupe_lake.Engine`` on Spark DataFrames: ``repartition(n, key)`` +
    ``mapInPandas``; persisted steps are local checkpoints (lineage stays short over the rounds)."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark

    def parallelize(self, inputs: list[Any], fn: Any, schema: str) -> Any:
        rdd = self.spark.sparkContext.parallelize([(pickle.dumps(x),) for x in inputs], numSlices=len(inputs))

        def run(frames: Iterator[Any]) -> Iterator[Any]:
            for df in frames:
                for x in df["p"]:
                    yield fn(pickle.loads(x))

        return self.spark.createDataFrame(rdd, "p binary").mapInPandas(run, schema)

    def map(self, df: Any, fn: Any, schema: str) -> Any:
        return df.mapInPandas(lambda frames: (fn(f) for f in frames if len(f)), schema)

    def shuffle(self, df: Any, key: str, fn: Any, schema: str, partitions: int) -> Any:
        return df.repartition(partitions, key).mapInPandas(lambda frames: _whole(frames, fn), schema)

    def union(self, *dfs: Any) -> Any:
        out = dfs[0]
        for d in dfs[1:]:
            out = out.unionByName(d)
        return out

    def collect(self, df: Any) -> Any:
        return df.toPandas()

    def count(self, df: Any) -> int:
        return int(df.count())

    def persist(self, df: Any) -> Any:
        return df.localCheckpoint(eager=True)

    def release(self, df: Any) -> None:
        df.unpersist()


class SparkRunner:
    name = "spark"

    def __init__(self, master: str | None = None, partitions: int | None = None) -> None:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", __import__("sys").executable)
        from pyspark.sql import SparkSession

        master = master or os.environ.get("MMLAKE_SPARK_MASTER")  # set by docker-compose.yml's services
        builder = (SparkSession.builder.appName("mmlake").master(master or f"local[{min(4, os.cpu_count() or 1)}]")
                   .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false").config("spark.sql.shuffle.partitions", "8")
                   .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                   .config("spark.driver.memory", "2g"))
        self.spark = builder.getOrCreate()
        self.spark.sparkContext.setLogLevel("ERROR")
        self.partitions = partitions

    def map_tasks(self, fn: Any, tasks: list[Any], desc: str = "") -> list[Any]:
        if not tasks:
            return []
        fn_b = pickle.dumps(fn)
        rdd = self.spark.sparkContext.parallelize([(i, pickle.dumps(t), fn_b) for i, t in enumerate(tasks)],
                                                  numSlices=self.partitions or len(tasks))
        df = self.spark.createDataFrame(rdd, "i long, task binary, fn binary")
        rows = df.mapInPandas(_run_partition, "i long, result binary").collect()
        return [pickle.loads(r["result"]) for r in sorted(rows, key=lambda r: r["i"])]

    def dedupe(self, job: Any) -> tuple[dict[int, str], dict[str, Any]]:
        from dataclasses import replace

        from pipelines.dedupe_lake import dedupe_on

        parts = self.partitions or int(self.spark.conf.get("spark.sql.shuffle.partitions"))
        return dedupe_on(SparkEngine(self.spark), replace(job, partitions=parts))

    def close(self) -> None:
        pass  # the session is reused by the next job in this process
