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
    import httpx
    from registry_conftest_serve import serve  # type: ignore[import-not-found]

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
    with serve(create_app(reg, ApiSettings())) as base, httpx.Client(base_url=base) as c:
        for name, path in routes.items():
            for _ in range(5):
                c.get(path()).raise_for_status()
            lat = []
            for _ in range(n_requests):
                p = path()
                t = time.perf_counter()
                c.get(p).raise_for_status()
                lat.append((time.perf_counter() - t) * 1000)
            out[f"{name} p50 ms"] = statistics.median(lat)
            out[f"{name} p99 ms"] = pct(lat, 0.99)
    reg.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--versions", type=int, default=10_000)
    ap.add_argument("--datasets", type=int, default=100)
    ap.add_argument("--requests", type=int, default=200)
    args = ap.parse_args()
    import importlib.util

    spec = importlib.util.spec_from_file_location("registry_conftest_serve",
                                                  Path(__file__).resolve().parents[1] / "tests/registry/conftest.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["registry_conftest_serve"] = mod
    spec.loader.exec_module(mod)  # type: ignore[union-attr]

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
