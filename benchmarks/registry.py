"""Registry throughput and read latency with many versions, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/registry.py [--versions 10000] [--datasets 100] [--requests 200]

1. Writes ``--versions`` tiny committed versions (one text sample each) spread over
   ``--datasets`` datasets in a local lake -- done once, shared by both databases.
2. Registers them all through the service (each registration reads and checks the manifest,
   takes the dataset's row lock and numbers the version): registrations/s.
3. Serves the registry over HTTP (uvicorn on 127.0.0.1) and measures p50/p99 latency of the
   main read routes with all versions registered, ``--requests`` calls each, one client.

The database is the only thing that changes between the two columns; PostgreSQL is a
throwaway local server (``registry.devdb``) with durability off. Writes JSON to
``benchmarks/results/registry.json``.

    .venv/bin/python benchmarks/registry.py --scale [--bulk-versions 1000000] [--runs 100000]

PostgreSQL at the size of a busy registry: the rows bulk-loaded, then p50/p99 of the read
routes (paged lists included), then ``--jobs`` queued jobs claimed and settled by
``--job-workers`` processes at once (``FOR UPDATE SKIP LOCKED``): jobs/s, each exactly once.
Writes ``benchmarks/results/registry-scale.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datalake import Lake, LocalStore, Sample  # noqa: E402
from datalake.sample import Source, TextPart  # noqa: E402
from registry.api import ApiSettings, create_app  # noqa: E402
from registry.devdb import TempPostgres  # noqa: E402
from registry.service import Registry  # noqa: E402


def make_versions(lake: Lake, n: int, n_datasets: int) -> list[str]:
    uris = []
    t0 = time.perf_counter()
    for i in range(n):
        s = Sample(key=f"k{i}", kind="text", source=Source(f"bench://{i}"), content=(TextPart(f"sample {i}"),))
        with lake.writer(f"ds{i % n_datasets:03d}") as w:
            w.add(s)
            uris.append(w.commit().uri)
        if (i + 1) % 2000 == 0:
            print(f"  wrote {i + 1} versions ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    return uris


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def bench(url: str, uris: list[str], n_datasets: int, n_requests: int) -> dict[str, float]:
    reg = Registry(url)
    t0 = time.perf_counter()
    for u in uris:
        reg.register_version(u)
    reg_s = time.perf_counter() - t0
    # a little lineage so the lineage route has work: a chain of runs over ds000
    for k in range(1, 6):
        r = reg.start_run("pipeline", f"chain-{k}", inputs=[f"ds000@{k}"])
        reg.finish_run(r.id, "succeeded", outputs=[reg.get_version(f"ds000@{k + 1}").manifest_uri])
    out: dict[str, float] = {"registrations_per_s": len(uris) / reg_s}
    rng = random.Random(0)
    per_ds = len(uris) // n_datasets
    routes = {
        "GET /api/v1/datasets": lambda: "/api/v1/datasets",
        "GET /api/v1/resolve?ref=NAME@latest": lambda: f"/api/v1/resolve?ref=ds{rng.randrange(n_datasets):03d}@latest",
        "GET /api/v1/versions/NAME@N": lambda: f"/api/v1/versions/ds{rng.randrange(n_datasets):03d}@{rng.randrange(1, per_ds + 1)}",
        "GET /api/v1/datasets/NAME/versions": lambda: f"/api/v1/datasets/ds{rng.randrange(n_datasets):03d}/versions",
        "GET /api/v1/versions/NAME@N/lineage": lambda: "/api/v1/versions/ds000@3/lineage",
        "GET /datasets (page)": lambda: "/datasets",
        "GET /datasets/NAME/N (version page)": lambda: f"/datasets/ds{rng.randrange(n_datasets):03d}/1",
    }
    out.update(time_routes(reg, routes, n_requests, warmup=5))
    reg.close()
    return out


def time_routes(reg: Registry, routes: dict[str, Any], n_requests: int, warmup: int = 3) -> dict[str, float]:
    """p50 / p99 ms of each route (a function giving the next path), served over HTTP, one client."""
    import httpx
    from registry_conftest_serve import serve  # type: ignore[import-not-found]

    out: dict[str, float] = {}
    with serve(create_app(reg, ApiSettings())) as base, httpx.Client(base_url=base, timeout=120) as c:
        for name, path in routes.items():
            for _ in range(warmup):
                c.get(path()).raise_for_status()
            lat = []
            for _ in range(n_requests):
                p = path()
                t = time.perf_counter()
                c.get(p).raise_for_status()
                lat.append((time.perf_counter() - t) * 1000)
            out[f"{name} p50 ms"] = statistics.median(lat)
            out[f"{name} p99 ms"] = pct(lat, 0.99)
            print(f"  {name}: p50 {out[f'{name} p50 ms']:.1f} ms", file=sys.stderr)
    return out


def bulk_load(reg: Registry, manifest_uri: str, n_versions: int, n_runs: int, n_datasets: int) -> float:
    """``n_versions`` version rows over ``n_datasets`` datasets and ``n_runs`` finished runs (each
    the maker of one version, the reader of the one before) inserted in bulk -- the row counts a
    large registry has, without registering a million manifests one by one. Every row names the
    same real manifest, so pages that open it work. Returns seconds."""
    import datetime as dt
    import uuid

    from sqlalchemy import insert

    from registry.models import Dataset, Run, RunInput, RunOutput
    from registry.models import DatasetVersion as VersionRow

    t0 = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    per = n_versions // n_datasets
    with reg.engine.begin() as conn:
        conn.execute(insert(Dataset), [{"id": d + 1, "name": f"big{d:03d}", "kind": "text", "owner": "bench",
                                        "description": "", "tags": [], "state": "active", "created_at": now,
                                        "updated_at": now} for d in range(n_datasets)])
    vid = 0
    chunk: list[dict[str, object]] = []
    for d in range(n_datasets):
        for k in range(per):
            vid += 1
            chunk.append({"id": vid, "dataset_id": d + 1, "number": k + 1, "version": f"{vid:012x}",
                          "digest": f"sha256:{vid:064x}", "manifest_uri": manifest_uri, "samples": 1, "bytes": 100,
                          "schema_version": 1, "stats": {}, "rejects": None, "state": "active",
                          "state_changed_at": now, "created_at": now})
            if len(chunk) == 20_000:
                with reg.engine.begin() as conn:
                    conn.execute(insert(VersionRow), chunk)
                chunk = []
        if d % 10 == 9:
            print(f"  {vid} version rows ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    if chunk:
        with reg.engine.begin() as conn:
            conn.execute(insert(VersionRow), chunk)
    runs, outs, ins = [], [], []
    for i in range(n_runs):
        rid = str(uuid.UUID(int=i + 1))
        runs.append({"id": rid, "kind": "pipeline", "name": f"run-{i}", "status": "succeeded", "spec": {},
                     "parameters": {}, "code_version": "bench", "counts": {"kept": 1}, "created_at": now,
                     "started_at": now, "ended_at": now})
        v = (i % vid) + 1
        outs.append({"run_id": rid, "version_id": v})
        if v > 1:
            ins.append({"run_id": rid, "version_id": v - 1})
        if len(runs) == 20_000 or i == n_runs - 1:
            with reg.engine.begin() as conn:
                conn.execute(insert(Run), runs)
                conn.execute(insert(RunOutput), outs)
                if ins:
                    conn.execute(insert(RunInput), ins)
            runs, outs, ins = [], [], []
    with reg.engine.begin() as conn:  # fresh planner statistics, as autovacuum would give
        conn.exec_driver_sql("ANALYZE")
    return time.perf_counter() - t0


def bench_scale(url: str, manifest_uri: str, n_versions: int, n_runs: int, n_datasets: int,
                n_requests: int) -> dict[str, float]:
    reg = Registry(url)
    out: dict[str, float] = {"bulk load s": bulk_load(reg, manifest_uri, n_versions, n_runs, n_datasets)}
    rng = random.Random(0)
    per = n_versions // n_datasets
    run_id = lambda: str(__import__("uuid").UUID(int=rng.randrange(1, n_runs + 1)))  # noqa: E731
    routes = {
        "GET /api/v1/datasets": lambda: "/api/v1/datasets",
        "GET /api/v1/resolve?ref=NAME@latest": lambda: f"/api/v1/resolve?ref=big{rng.randrange(n_datasets):03d}@latest",
        "GET /api/v1/versions/NAME@N": lambda: f"/api/v1/versions/big{rng.randrange(n_datasets):03d}@{rng.randrange(1, per + 1)}",
        "GET /api/v1/datasets/NAME/versions?limit=100": lambda: f"/api/v1/datasets/big{rng.randrange(n_datasets):03d}/versions?limit=100&offset={rng.randrange(0, per - 100)}",
        "GET /api/v1/runs?limit=100": lambda: "/api/v1/runs?limit=100",
        "GET /api/v1/runs/ID": lambda: f"/api/v1/runs/{run_id()}",
        "GET /api/v1/versions/NAME@N/lineage?depth=2": lambda: f"/api/v1/versions/big{rng.randrange(n_datasets):03d}@{rng.randrange(2, per)}/lineage?depth=2",
        "GET /datasets (page)": lambda: "/datasets",
        "GET /runs (page)": lambda: "/runs",
    }
    out.update(time_routes(reg, routes, n_requests))
    reg.close()
    return out


def _claimer(url: str, owner: str, result: object, ready: object, go: object) -> None:
    """One worker: claim and settle jobs until the queue is empty (no job process: this
    measures the queue, the part a restart or a second worker depends on)."""
    from registry.worker import JobQueue

    reg = Registry(url, migrate_db=False)
    q = JobQueue(reg)
    got = []
    ready.put(owner)  # type: ignore[attr-defined]
    go.wait()  # type: ignore[attr-defined]
    while True:
        j = q.claim(owner, lease_s=60)
        if j is None:
            break
        with reg.session() as s:
            from registry.models import Run

            r = s.get(Run, j.run_id)
            r.status = "succeeded"
        q.settle(j.run_id, owner, 0)
        got.append(j.run_id)
    reg.close()
    result.put(got)  # type: ignore[attr-defined]


def bench_jobs(url: str, n_jobs: int, workers: int) -> dict[str, float]:
    """Jobs/s claimed (and settled) by ``workers`` processes at once; every job exactly once."""
    import multiprocessing as mp

    from registry.worker import JobQueue

    reg = Registry(url)
    q = JobQueue(reg)
    spec = {"type": "ingest", "source": "/nowhere", "dataset": "x"}
    for _ in range(n_jobs):
        q.enqueue("ingest", "bench job", job_spec=spec, config={"lake": "/tmp"}, submitted_by=None)
    ctx = mp.get_context("spawn")
    res, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_claimer, args=(url, f"bench:{k}:w", res, ready, go)) for k in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:  # every worker connected: time the queue, not process start-up
        ready.get()
    t0 = time.perf_counter()
    go.set()
    claimed = [res.get() for _ in procs]
    dt_s = time.perf_counter() - t0
    for p in procs:
        p.join()
    flat = [j for c in claimed for j in c]
    assert len(flat) == len(set(flat)) == n_jobs, "a job was claimed twice or lost"
    reg.close()
    return {f"jobs/s claimed by {workers} workers": n_jobs / dt_s,
            "fewest jobs one worker claimed": float(min(len(c) for c in claimed)),
            "most jobs one worker claimed": float(max(len(c) for c in claimed))}


def main_scale(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mmlake-regbench-"))
    lake = Lake(LocalStore(tmp / "lake"))
    uri = make_versions(lake, 1, 1)[0]
    pg = TempPostgres.start()
    try:
        print(f"PostgreSQL: {args.bulk_versions} versions, {args.runs} runs ...", file=sys.stderr)
        res = bench_scale(pg.new_database(), uri, args.bulk_versions, args.runs, args.datasets, args.requests)
        res.update(bench_jobs(pg.new_database(), args.jobs, args.job_workers))
    finally:
        pg.stop()
    print(f"\nPostgreSQL with {args.bulk_versions:,} versions in {args.datasets} datasets and {args.runs:,} runs; "
          f"{args.requests} requests per route, one client\n")
    w = max(len(k) for k in res)
    print(f"| {'measure'.ljust(w)} | PostgreSQL |")
    print(f"|{'-' * (w + 2)}|------------|")
    for k, v in res.items():
        print(f"| {k.ljust(w)} | {v:10.1f} |")
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "registry-scale.json").write_text(json.dumps({"args": vars(args), "results": res}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--datasets", type=int, default=100)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--scale", action="store_true",
                    help="PostgreSQL at scale: bulk-loaded --bulk-versions and --runs, read routes' p50/p99, "
                         "and --jobs claimed by --job-workers processes")
    ap.add_argument("--bulk-versions", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--job-workers", type=int, default=4)
    args = ap.parse_args()
    import importlib.util

    spec = importlib.util.spec_from_file_location("registry_conftest_serve",
                                                  Path(__file__).resolve().parents[1] / "tests/registry/conftest.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["registry_conftest_serve"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]

    if args.scale:
        main_scale(args)
        return
    tmp = Path(tempfile.mkdtemp(prefix="mmlake-regbench-"))
    print(f"writing {args.versions} versions over {args.datasets} datasets ...", file=sys.stderr)
    uris = make_versions(Lake(LocalStore(tmp / "lake")), args.versions, args.datasets)
    results = {}
    print("SQLite ...", file=sys.stderr)
    results["SQLite"] = bench(f"sqlite:///{tmp / 'registry.db'}", uris, args.datasets, args.requests)
    pg = TempPostgres.start()
    try:
        print("PostgreSQL ...", file=sys.stderr)
        results["PostgreSQL"] = bench(pg.new_database(), uris, args.datasets, args.requests)
    finally:
        pg.stop()
    keys = list(results["SQLite"])
    w = max(len(k) for k in keys)
    print(f"\n{args.versions} versions in {args.datasets} datasets; {args.requests} requests per route, one client\n")
    print(f"| {'measure'.ljust(w)} | SQLite | PostgreSQL |")
    print(f"|{'-' * (w + 2)}|--------|------------|")
    for k in keys:
        print(f"| {k.ljust(w)} | {results['SQLite'][k]:6.1f} | {results['PostgreSQL'][k]:10.1f} |")
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "registry.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))


if __name__ == "__main__":
    main()
