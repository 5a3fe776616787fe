"""Spark runner: tasks through ``mapInPandas``, dedupe bands through ``groupBy().applyInPandas``.

``local[N]`` by default, or ``master: spark://host:7077``. Tasks and records travel pickled in
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


def _verify(frames: Iterator[Any]) -> Iterator[Any]:
    """Verify many groups per call (one row per group with its records collected)."""
    import pandas as pd

    from pipelines.dedupe_core import verify_group
    from pipelines.stage import build_stage

    stages: dict[bytes, Any] = {}
    for df in frames:
        pairs: list[tuple[int, int]] = []
        for st, recs in zip(df["stage"], df["recs"], strict=True):
            if st not in stages:
                stages[st] = build_stage(*pickle.loads(st))
            pairs.extend(verify_group(stages[st], [pickle.loads(r) for r in recs]))
        yield pd.DataFrame(pairs, columns=["a", "b"], dtype="int64")


class SparkRunner:
    name = "spark"

    def __init__(self, master: str | None = None, partitions: int | None = None) -> None:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        os.environ.setdefault("PYSPARK_PYTHON", __import__("sys").executable)
        from pyspark.sql import SparkSession

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

    def find_pairs(self, stage: tuple[str, dict[str, Any]], records: list[Any]) -> set[tuple[int, int]]:
        if not records:
            return set()
        st = pickle.dumps(stage)
        from pyspark.sql import functions as F

        df = self.spark.createDataFrame([(r.group, pickle.dumps(r)) for r in records], "g string, rec binary")
        groups = (df.groupBy("g").agg(F.collect_list("rec").alias("recs")).where(F.size("recs") > 1)
                  .withColumn("stage", F.lit(st)))
        rows = groups.mapInPandas(_verify, "a long, b long").collect()
        return {(int(r["a"]), int(r["b"])) for r in rows}

    def close(self) -> None:
        pass  # the session is reused by the next job in this process
