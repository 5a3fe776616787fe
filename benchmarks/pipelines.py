"""Pipeline throughput on three engines, MinHash speed, near-dup clustering scale, dedupe quality.

    .venv/bin/python benchmarks/pipelines.py [--images 1200] [--hashes 10000,50000,100000]

1. The same filter + dedupe spec (decode, image_filter, text_filter, dedupe_exact,
   dedupe_image, dedupe_text) over one registered version of generated 320x240 captioned
   JPEGs, on the local runner (2 processes), Ray (2 CPUs) and Spark (local[2]): samples/s per
   core, engine start-up excluded (reported separately); the three output digests must match.
2. MinHash signatures of word 3-shingles, 128 permutations: ``datasketch``'s ``MinHash.bulk``
   (what ``dedupe_text`` uses) against the plain loop of ``MinHash().update`` per shingle.
3. Near-duplicate image clustering (band records + grouping + verification + union-find) as
   the number of 64-bit hashes grows, 10% of them planted near-duplicates; and a vectorised
   brute-force all-pairs scan for comparison where it fits.
4. Quality against brute force (``pipelines.quality``).
Writes JSON to ``benchmarks/results/pipelines.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datalake import Lake, LocalStore  # noqa: E402
from datalake.ingest import IngestConfig  # noqa: E402
from pipelines.dedupe_core import clusters, find_pairs  # noqa: E402
from pipelines.quality import edited_texts, image_quality, text_quality  # noqa: E402
from pipelines.run import run_pipeline  # noqa: E402
from pipelines.spec import parse_spec  # noqa: E402
from pipelines.stage import build_stage  # noqa: E402
from registry.jobs import run_ingest  # noqa: E402
from registry.service import Registry  # noqa: E402
from synth.shapes import write_caption_folder  # noqa: E402

STAGES = [{"decode": {}}, {"image_filter": {"min_side": 64, "max_aspect": 4.0}}, {"text_filter": {"min_words": 3}},
          {"dedupe_exact": {}}, {"dedupe_image": {"max_hamming": 6}}, {"dedupe_text": {"threshold": 0.8}}]


def engines(n_images: int) -> list[dict[str, object]]:
    tmp = Path(tempfile.mkdtemp(prefix="mmlake-pbench-"))
    write_caption_folder(tmp / "raw", n_images, seed=5, size=(320, 240))
    lake = Lake(LocalStore(tmp / "lake"))
    reg = Registry(f"sqlite:///{tmp / 'r.db'}")
    run_ingest(reg, lake, [str(tmp / "raw")], IngestConfig("bench-raw", workers=2), progress=False)
    rows = []
    for name in ("local", "ray", "spark"):
        t0 = time.perf_counter()
        if name == "local":
            from pipelines.runners.local import LocalRunner

            runner = LocalRunner(workers=2, progress=False)
        elif name == "ray":
            from pipelines.runners.ray_runner import RayRunner

            runner = RayRunner(num_cpus=2)
        else:
            from pipelines.runners.spark_runner import SparkRunner

            runner = SparkRunner(master="local[2]")
        start = time.perf_counter() - t0
        spec = parse_spec({"name": f"b-{name}", "input": "bench-raw@1", "output": f"out-{name}", "runner": name,
                           "partition_size": 100, "stages": STAGES})
        t0 = time.perf_counter()
        out = run_pipeline(spec, lake, reg, progress=False, runner=runner)
        secs = time.perf_counter() - t0
        shards = [s.sha256 for s in reg.open_version(out["output"]).manifest.shards]
        rows.append({"engine": name, "samples": out["samples_in"], "seconds": secs, "startup_s": start,
                     "samples_per_s_per_core": out["samples_in"] / secs / 2, "shards": shards,
                     "kept": out["kept"]})
        print(f"  {name}: {secs:.1f} s", file=sys.stderr)
    return rows


def minhash(n_docs: int) -> dict[str, float]:
    from datasketch import MinHash

    st = build_stage("dedupe_text", {})
    texts = edited_texts(n_docs, 0, seed=3)
    sets = [st.shingles(t) for t in texts]
    t0 = time.perf_counter()
    st.band_hashes(sets)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    for s in sets:
        m = MinHash(num_perm=128, seed=1)
        for x in s:
            m.update(int(x).to_bytes(4, "little"))
    loop = time.perf_counter() - t0
    return {"docs": n_docs, "bulk_docs_per_s": n_docs / ours, "loop_docs_per_s": n_docs / loop, "speedup": loop / ours}


def clustering(sizes: list[int]) -> list[dict[str, float]]:
    st = build_stage("dedupe_image", {"max_hamming": 6})
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        base = rng.integers(0, 2**63, n - n // 10, dtype=np.int64).astype(np.uint64)
        dups = base[rng.integers(0, len(base), n // 10)].copy()
        for i in range(len(dups)):
            for b in rng.choice(64, int(rng.integers(1, 7)), replace=False):
                dups[i] ^= np.uint64(1) << np.uint64(int(b))
        sigs = [int(x) for x in np.concatenate([base, dups])]
        t0 = time.perf_counter()
        pairs = find_pairs(st, [r for i, s in enumerate(sigs) for r in st.band_records(i, s)])
        dup = clusters(pairs, {i: (0, i) for i in range(n)}, transitive=False)
        secs = time.perf_counter() - t0
        row = {"hashes": n, "seconds": secs, "duplicates": len(dup)}
        if n <= 50_000:
            arr = np.array(sigs, dtype=np.uint64)
            t0 = time.perf_counter()
            found = 0
            for i in range(0, n, 2000):  # vectorised all-pairs, in row blocks
                x = np.bitwise_count(arr[i:i + 2000, None] ^ arr[None, :])
                found += int((x <= 6).sum())
            row["brute_force_seconds"] = time.perf_counter() - t0
        rows.append(row)
        print(f"  {n} hashes: {secs:.1f} s", file=sys.stderr)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=1200)
    ap.add_argument("--hashes", default="10000,50000,100000")
    ap.add_argument("--docs", type=int, default=5000)
    args = ap.parse_args()
    print("engines ...", file=sys.stderr)
    eng = engines(args.images)
    print("minhash ...", file=sys.stderr)
    mh = minhash(args.docs)
    print("clustering ...", file=sys.stderr)
    cl = clustering([int(x) for x in args.hashes.split(",")])
    print("quality ...", file=sys.stderr)
    tq = text_quality(2000, 400, 0.8, seed=0)
    iq = image_quality(200, 6, seed=0)

    print(f"\n1. filter + dedupe pipeline, {eng[0]['samples']} samples (320x240 JPEG + caption), 2 cores\n")
    print("| engine | seconds | samples/s per core | engine start-up s | kept | shards byte-identical to local |")
    print("|---|---|---|---|---|---|")
    for r in eng:
        same = "yes" if r["shards"] == eng[0]["shards"] else "NO"
        print(f"| {r['engine']} | {r['seconds']:.1f} | {r['samples_per_s_per_core']:.1f} | {r['startup_s']:.1f} | "
              f"{r['kept']} | {same} |")
    print(f"\n2. MinHash, {mh['docs']} docs, 128 permutations\n")
    print("| method | docs/s |\n|---|---|")
    print(f"| datasketch MinHash.bulk (dedupe_text) | {mh['bulk_docs_per_s']:.0f} |")
    print(f"| plain datasketch update loop | {mh['loop_docs_per_s']:.0f} |")
    print(f"\nbulk / loop = {mh['speedup']:.1f}x")
    print("\n3. near-duplicate image clustering (multi-index hashing, h=6)\n")
    print("| hashes | seconds | duplicates found | brute-force all-pairs seconds |\n|---|---|---|---|")
    for r in cl:
        bf = f"{r['brute_force_seconds']:.1f}" if "brute_force_seconds" in r else "—"
        print(f"| {r['hashes']:,} | {r['seconds']:.1f} | {r['duplicates']:,} | {bf} |")
    if len(cl) > 1:
        k = np.polyfit(np.log([r["hashes"] for r in cl]), np.log([r["seconds"] for r in cl]), 1)[0]
        print(f"\ntime grows as n^{k:.2f} (2.0 would be quadratic)")
    print("\n4. quality against brute force\n")
    print(f"text (Jaccard >= 0.8, {tq['docs']} docs, {tq['true_pairs']} true pairs): precision {tq['precision']:.3f}, "
          f"recall {tq['recall']:.3f}")
    print(f"images ({iq['images']} images, h <= 6): clusters equal brute force: {iq['clusters_equal_brute_force']}")
    print("| copy | within h of its original |\n|---|---|")
    for t, v in iq["recall_by_transform"].items():
        print(f"| {t} | {v:.3f} |")
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "pipelines.json").write_text(json.dumps({"engines": eng, "minhash": mh, "clustering": cl, "text": tq,
                                                    "images": iq}, indent=1, default=str))


if __name__ == "__main__":
    main()
