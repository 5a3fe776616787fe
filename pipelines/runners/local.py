"""The embedded runner: tasks on a process pool (``workers``), dedupe in-process."""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from pipelines.dedupe_lake import dedupe_local
from pipelines.stage import SpecError


class LocalRunner:
    name = "local"

    def __init__(self, workers: int = 2, progress: bool | None = None) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise SpecError(f"runner_options.workers must be a positive integer, got {workers!r}")
        self.workers, self.progress = workers, progress
        self._pool: ProcessPoolExecutor | None = None

    def map_tasks(self, fn: Any, tasks: list[Any], desc: str = "") -> list[Any]:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc=desc, unit="task", disable=None if self.progress is None else not self.progress)
        try:
            if self.workers == 1 or len(tasks) <= 1:
                out = []
                for t in tasks:
                    out.append(fn(t))
                    bar.update(1)
                return out
            if self._pool is None:
                # fork: fast, and callers need no `if __name__ == "__main__"` guard; workers only
                # run our task function, which takes no lock another thread might hold
                method = "fork" if sys.platform == "linux" else "spawn"
                self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context(method))
            futures = [self._pool.submit(fn, t) for t in tasks]
            out = []
            for f in futures:
                out.append(f.result())
                bar.update(1)
            return out
        finally:
            bar.close()

    def dedupe(self, job: Any) -> tuple[dict[int, str], dict[str, Any]]:
        return dedupe_local(job)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def terminate(self) -> None:
        """Stop the workers now (a cancelled run): kill the pool's processes, drop queued tasks."""
        if self._pool is not None:
            procs = list(getattr(self._pool, "_processes", {}).values())
            self._pool.shutdown(wait=False, cancel_futures=True)
            for p in procs:
                p.terminate()
            for p in procs:
                p.join(5)
            self._pool = None
