"""Shard write/read throughput on local disk and on an S3-protocol server, beside the ceiling.

    .venv/bin/python benchmarks/shards.py [--images 300] [--size 1024x768] [--repeat 3]

Writes one corpus of generated real-size JPEGs as a dataset version, then reads it back:
sequentially (every sample, records parsed, bytes checked for length) and at random (sample
*i* by one ranged read). The ceiling is a plain sequential read of the same tar files in 1 MiB
chunks, and the ``webdataset`` library reading the same tars is shown as a peer. The S3 rows
talk HTTP to a ``moto_server`` on 127.0.0.1 started by this script (moto is Python and is much
slower than MinIO or S3: those rows measure our client's overhead against a slow server, not
S3). Everything is in the page cache after the first pass: these are CPU-bound numbers.
Reports medians of ``--repeat`` runs and writes JSON to ``benchmarks/results/shards.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datalake import Lake, LocalStore, S3Options, S3Store, write_version  # noqa: E402
from datalake.sample import Media, MediaPart, Sample, Source, TextPart  # noqa: E402
from synth.shapes import render_shapes  # noqa: E402


def corpus(n: int, size: tuple[int, int]) -> list[Sample]:
    out = []
    for i in range(n):
        im = render_shapes(42, i, size, quality=92, noise=18)
        out.append(Sample(key=f"img{i:06d}", kind="caption", source=Source(f"synth://bench/{i}"),
                          media=(Media("0.jpg", "image/jpeg", im.width, im.height),),
                          content=(MediaPart(0), TextPart(im.plain_caption())), blobs={"0.jpg": im.jpeg}))
    return out


def median_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("moto_server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--size", default="1024x768")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--random-reads", type=int, default=200)
    ap.add_argument("--shard-samples", type=int, default=100)
    args = ap.parse_args()
    w, h = (int(x) for x in args.size.split("x"))
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    samples = corpus(args.images, (w, h))
    media_mb = sum(len(s.blobs["0.jpg"]) for s in samples) / 1e6
    print(f"corpus: {len(samples)} JPEGs {w}x{h}, {media_mb:.1f} MB of media; median of {args.repeat} runs\n")
    rows: list[dict[str, object]] = []
    tmp = Path(tempfile.mkdtemp(prefix="mmlake-bench-"))
    moto, endpoint = start_moto()
    try:
        import random

        picks = random.Random(0).sample(range(len(samples)), min(args.random_reads, len(samples)))
        stores: dict[str, Callable[[int], object]] = {
            "local disk": lambda k: LocalStore(tmp / f"lake{k}"),
            "S3 (moto_server, HTTP)": lambda k: _s3(endpoint, f"bench{k}"),
        }
        for name, make in stores.items():
            counter = iter(range(10**6))
            versions = []

            def write(make: Callable[[int], object] = make, counter=counter, versions=versions) -> None:  # type: ignore[no-untyped-def]
                versions.append(write_version(Lake(make(next(counter))), "bench", samples,  # type: ignore[arg-type]
                                              shard_samples=args.shard_samples))

            t_write = median_time(write, args.repeat)
            v = versions[-1]
            total_mb = v.manifest.bytes / 1e6

            def read_seq(v=v) -> None:  # type: ignore[no-untyped-def]
                n = sum(1 for _ in v)
                assert n == len(samples)

            t_seq = median_time(read_seq, args.repeat)
            for j in range(len(v.manifest.shards)):
                _ = v.shard(j).index

            def read_random(v=v) -> None:  # type: ignore[no-untyped-def]
                for i in picks:
                    v.get(i)

            t_rand = median_time(read_random, args.repeat)
            rows.append({"store": name, "write_MBps": total_mb / t_write, "seq_read_MBps": total_mb / t_seq,
                         "seq_samples_per_s": len(samples) / t_seq, "random_samples_per_s": len(picks) / t_rand,
                         "shard_MB": total_mb})
            if name == "local disk":
                tars = [v.store.url(s.path)[len("file://"):] for s in v.manifest.shards]

                def plain(tars: list[str] = tars) -> None:
                    for p in tars:
                        with open(p, "rb", buffering=0) as f:
                            while f.read(1 << 20):
                                pass

                t_plain = median_time(plain, args.repeat)
                rows.append({"store": "ceiling: plain sequential file read", "seq_read_MBps": total_mb / t_plain,
                             "seq_samples_per_s": len(samples) / t_plain, "shard_MB": total_mb})
                try:
                    import webdataset as wds

                    def wds_read(tars: list[str] = tars) -> None:
                        n = sum(1 for _ in wds.WebDataset(tars, shardshuffle=False, empty_check=False))
                        assert n == len(samples)

                    t_wds = median_time(wds_read, args.repeat)
                    rows.append({"store": "peer: webdataset (same tars)", "seq_read_MBps": total_mb / t_wds,
                                 "seq_samples_per_s": len(samples) / t_wds, "shard_MB": total_mb})
                except ImportError:
                    print("(webdataset not installed: pip install -e '.[bench]')")
    finally:
        moto.terminate()
        shutil.rmtree(tmp, ignore_errors=True)

    cols = [("store", "{}"), ("write_MBps", "{:.0f}"), ("seq_read_MBps", "{:.0f}"), ("seq_samples_per_s", "{:.0f}"),
            ("random_samples_per_s", "{:.0f}")]
    heads = ["store", "write MB/s", "seq read MB/s", "seq samples/s", "random sample/s (1 ranged GET)"]
    table = [heads] + [[fmt.format(r[c]) if c in r else "—" for c, fmt in cols] for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(heads))]
    print("| " + " | ".join(h.ljust(wd) for h, wd in zip(heads, widths, strict=True)) + " |")
    print("|" + "|".join("-" * (wd + 2) for wd in widths) + "|")
    for row in table[1:]:
        print("| " + " | ".join(str(c).ljust(wd) for c, wd in zip(row, widths, strict=True)) + " |")
    local = next(r for r in rows if r["store"] == "local disk")
    ceiling = next(r for r in rows if str(r["store"]).startswith("ceiling"))
    print(f"\nlocal sequential read = {local['seq_read_MBps'] / ceiling['seq_read_MBps']:.2f} x the plain-read ceiling")  # type: ignore[operator]
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "shards.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


def _s3(endpoint: str, bucket: str) -> S3Store:
    s = S3Store(bucket, "lake", S3Options(endpoint_url=endpoint))
    s.create_bucket()
    return s


if __name__ == "__main__":
    main()
