"""Runners decide *where* the same tasks run: in-process (``local``), on Ray Data, on Spark.

A runner does two things: ``map_tasks(fn, tasks)`` (results in task order; tasks write their
rows to the lake and return counts and paths) and ``dedupe(job)`` (``pipelines.dedupe_lake``:
read the items the tasks wrote, find, verify and cluster duplicates inside the engine, write
one decision file per task). Nothing else differs between engines, which is why they produce
the same output version.
"""

from __future__ import annotations

from typing import Any, Protocol

from pipelines.stage import SpecError

__all__ = ["Runner", "make_runner"]


class Runner(Protocol):
    name: str

    def map_tasks(self, fn: Any, tasks: list[Any], desc: str = "") -> list[Any]: ...

    def dedupe(self, job: Any) -> tuple[dict[int, str], dict[str, Any]]: ...

    def close(self) -> None: ...


def make_runner(name: str, options: dict[str, Any], progress: bool | None = None) -> Runner:
    if name == "local":
        from pipelines.runners.local import LocalRunner

        return LocalRunner(progress=progress, **options)
    if name == "ray":
        from pipelines.runners.ray_runner import RayRunner

        return RayRunner(**options)
    if name == "spark":
        from pipelines.runners.spark_runner import SparkRunner

        return SparkRunner(**options)
    raise SpecError(f"runner {name!r} is not one of local, ray, spark")
