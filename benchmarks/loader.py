"""The training loader beside its peers, on one generated corpus, in one run.

    make bench-loader          # = .venv-bench/bin/python benchmarks/loader.py
    .venv-bench/bin/python benchmarks/loader.py [--images 2000] [--workers 2] [--repeat 3]

Corpus: ``--images`` real-size JPEGs (640-1280 px sides, photographic noise) with captions and
boxes, written once as an mmlake dataset version (its shards are WebDataset tars) and converted
to MosaicML Streaming (MDS) and LitData formats. Every system does the same per-sample work:
decode the JPEG (Pillow, DCT-domain ``draft`` to the budget) and resize it to the pixel budget
(``--max-pixels``, sides multiples of 28). mmlake additionally tokenizes, renders the boxes and
packs into ``--seq-len`` rows. The ceiling is that decode+resize in a bare ``multiprocessing``
pool with the same number of processes, reading the same bytes and handing the decoded pixels
back to the consuming process (as every loader must).

Reported per system (medians of ``--repeat`` runs): steady samples/s (after the first batch),
time to first batch, time to first batch after resuming at 10 % and 90 % of an epoch (with
each system's own resume mechanism; WebDataset has none, so it skips samples without decoding),
peak RSS of the process tree, and packing fill (mmlake only). Writes
``benchmarks/results/loader.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

from PIL import Image  # noqa: E402

from datalake import Lake, write_version  # noqa: E402
from datalake.sample import Annotation, Media, MediaPart, Sample, Source, TextPart  # noqa: E402
from loader.augment import budget_size  # noqa: E402
from synth.shapes import render_shapes  # noqa: E402

MAX_PIXELS = 448 * 448


def decode_resize(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """The per-sample work every system does."""
    im = Image.open(io.BytesIO(data))
    w, h = budget_size(*im.size, max_pixels, 28)
    if im.format == "JPEG":
        im.draft("RGB", (w, h))
    return np.asarray(im.convert("RGB").resize((w, h), Image.Resampling.BILINEAR))


# -- corpus ----------------------------------------------------------------------------------------
def corpus(n: int) -> Iterator[Sample]:
    rng = np.random.default_rng(7)
    for i in range(n):
        w = int(rng.integers(640, 1281))
        h = int(w * rng.choice([0.75, 0.5625, 1.0, 1.333]))
        im = render_shapes(11, i, (w, h), quality=90, noise=18)
        anns = tuple(Annotation(0, "box", xyxy=b, label=lab) for b, lab in zip(im.boxes, im.labels, strict=True))
        text = im.plain_caption() + " " + " ".join(f"{lab} at {{box:{j}}}." for j, lab in enumerate(im.labels))
        yield Sample(key=f"img{i:06d}", kind="caption", source=Source(f"synth://bench/{i}"),
                     media=(Media("0.jpg", "image/jpeg", im.width, im.height),),
                     content=(MediaPart(0), TextPart(text)), annotations=anns, blobs={"0.jpg": im.jpeg})


def build_corpus(root: Path, n: int) -> dict[str, Any]:
    done = root / "corpus.json"
    if done.exists():
        return json.loads(done.read_text())
    lake = Lake.open(str(root / "lake"))
    v = write_version(lake, "bench", corpus(n), shard_samples=200)
    tars = [str(root / "lake" / "datasets" / "bench" / s.path) for s in v.manifest.shards]
    members = []  # (tar, offset, length) of every JPEG, for the ceiling and the converters
    for s, t in zip(v.manifest.shards, tars, strict=True):
        for e in v.shard(v.manifest.shards.index(s)).index.entries:
            off, size = e.members["0.jpg"]
            members.append([t, e.offset + off, size, e.key])
    info = {"uri": v.uri, "tars": tars, "members": members, "n": n,
            "bytes": sum(s.bytes for s in v.manifest.shards)}
    try:
        from streaming import MDSWriter

        with MDSWriter(out=str(root / "mds"), columns={"jpg": "bytes", "key": "str"}, size_limit="64mb") as w:
            for t, off, size, key in members:
                w.write({"jpg": read_at(t, off, size), "key": key})
        info["mds"] = str(root / "mds")
    except ImportError:
        pass
    try:
        import litdata

        litdata.optimize(fn=_lit_item, inputs=[tuple(m) for m in members], output_dir=str(root / "litdata"),
                         chunk_bytes="64MB", num_workers=1)
        info["litdata"] = str(root / "litdata")
    except ImportError:
        pass
    done.write_text(json.dumps(info))
    return info


def read_at(path: str, off: int, size: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(off)
        return f.read(size)


def _lit_item(m: tuple[str, int, int, str]) -> dict[str, Any]:
    return {"jpg": read_at(m[0], m[1], m[2]), "key": m[3]}


# -- measurement -----------------------------------------------------------------------------------
class RssPeak:
    """Peak resident memory of this process and its children, sampled every 50 ms."""

    def __init__(self) -> None:
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                total = self.proc.memory_info().rss + sum(c.memory_info().rss for c in self.proc.children(True))
                self.peak = max(self.peak, total)
            except Exception:  # noqa: BLE001 - children come and go
                pass
            time.sleep(0.05)

    def __enter__(self) -> RssPeak:
        self.thread.start()
        return self

    def __exit__(self, *a: object) -> None:
        self._stop.set()
        self.thread.join()


class System(ABC):
    """One loader under test: ``make(resume_state)`` -> (iterator of batches, samples per batch fn,
    state fn)."""

    name = ""

    def __init__(self, info: dict[str, Any], workers: int, args: argparse.Namespace) -> None:
        self.info, self.workers, self.args = info, workers, args

    @abstractmethod
    def iterate(self, state: Any = None) -> tuple[Iterator[Any], Callable[[Any], int], Callable[[], Any]]:
        """A fresh iterator (resumed from ``state``), a batch -> samples counter, a state getter."""


class Mmlake(System):
    name = "mmlake"

    def iterate(self, state: Any = None) -> tuple[Iterator[Any], Callable[[Any], int], Callable[[], Any]]:
        from loader import LoaderConfig, SourceSpec, build_loader

        ld = build_loader(LoaderConfig([SourceSpec(self.info["uri"])], seq_len=self.args.seq_len, batch_size=1,
                                       num_workers=self.workers, augment=None, max_pixels=MAX_PIXELS,
                                       pack_buffer=32))
        if state is not None:
            ld.load_state_dict(state)
        self.loader = ld
        return iter(ld), lambda b: sum(len(r) for r in b["sample_keys"]), ld.state_dict

    def fill(self) -> float:
        return float(self.loader.metrics()["fill"])


def _collate(batch: list[Any]) -> list[Any]:
    return batch


def _collate_dict(batch: list[Any]) -> dict[str, list[Any]]:
    return {"images": batch}


class _Skipper:
    """No resume in WebDataset: skip this worker's share of ``n`` samples without decoding."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        import torch.utils.data as tud

        info = tud.get_worker_info()
        share = self.n // (info.num_workers if info else 1)
        for i, s in enumerate(src):
            if i >= share:
                yield s


class _WdsDecode:
    def __call__(self, sample: dict[str, Any]) -> np.ndarray:
        return decode_resize(sample["0.jpg"])


class WebDatasetSys(System):
    name = "webdataset"

    def iterate(self, state: Any = None) -> tuple[Iterator[Any], Callable[[Any], int], Callable[[], Any]]:
        import torch.utils.data as tud
        import webdataset as wds

        skip = int(state or 0)
        count = {"n": skip}
        ds = (wds.WebDataset(self.info["tars"], shardshuffle=False, nodesplitter=wds.split_by_node,
                             workersplitter=wds.split_by_worker, empty_check=False)
              .compose(_Skipper(skip)).map(_WdsDecode()).batched(16, collation_fn=_collate))
        dl = tud.DataLoader(ds, batch_size=None, num_workers=self.workers, prefetch_factor=4)

        def counted() -> Iterator[Any]:
            for b in dl:
                count["n"] += len(b)
                yield b

        return counted(), len, lambda: count["n"]


try:
    from streaming import StreamingDataset as _StreamingDataset

    class MdsDecoded(_StreamingDataset):  # type: ignore[misc]
        def __getitem__(self, i: int) -> np.ndarray:
            return decode_resize(super().__getitem__(i)["jpg"])
except ImportError:  # the peers are in the bench extra only
    MdsDecoded = None

try:
    import litdata as _litdata

    class LitDecoded(_litdata.StreamingDataset):  # type: ignore[misc]
        def __getitem__(self, i: Any) -> np.ndarray:
            return decode_resize(super().__getitem__(i)["jpg"])
except ImportError:
    LitDecoded = None


class StreamingSys(System):
    name = "mosaicml-streaming"

    def iterate(self, state: Any = None) -> tuple[Iterator[Any], Callable[[Any], int], Callable[[], Any]]:
        from streaming import StreamingDataLoader
        from streaming.base.util import clean_stale_shared_memory

        clean_stale_shared_memory()
        ds = MdsDecoded(local=self.info["mds"], shuffle=False, batch_size=16)
        # a dict batch: StreamingDataLoader counts a list batch by the length of its first item
        dl = StreamingDataLoader(ds, batch_size=16, num_workers=self.workers, collate_fn=_collate_dict,
                                 prefetch_factor=4)
        if state is not None:
            dl.load_state_dict(state)
        return iter(dl), lambda b: len(b["images"]), dl.state_dict


class LitdataSys(System):
    name = "litdata"

    def iterate(self, state: Any = None) -> tuple[Iterator[Any], Callable[[Any], int], Callable[[], Any]]:
        import litdata

        ds = LitDecoded(self.info["litdata"], shuffle=False)
        dl = litdata.StreamingDataLoader(ds, batch_size=16, num_workers=self.workers, collate_fn=_collate,
                                         prefetch_factor=4)
        if state is not None:
            dl.load_state_dict(state)
        return iter(dl), len, dl.state_dict


def _ceiling_work(m: list[Any]) -> np.ndarray:
    return decode_resize(read_at(m[0], m[1], m[2]))  # the pixels go back to the consumer, as in a loader


def ceiling(info: dict[str, Any], workers: int, n: int) -> dict[str, Any]:
    members = info["members"][:n]
    with RssPeak() as rss:
        t0 = time.perf_counter()
        with mp.get_context("fork").Pool(workers) as pool:
            it = pool.imap(_ceiling_work, members, chunksize=16)  # batches of 16, like the loaders
            next(it)
            t1 = time.perf_counter()
            rest = sum(1 for _ in it)
        t2 = time.perf_counter()
    return {"samples_per_s": rest / (t2 - t1), "first_batch_s": t1 - t0, "peak_rss_mib": rss.peak / 2**20}


def run_system(sys_: System, n: int) -> dict[str, Any]:
    """One pass over ``n`` samples: throughput, first batch, and states at 10 % and 90 %."""
    states: dict[str, Any] = {}
    with RssPeak() as rss:
        t0 = time.perf_counter()
        it, count, state = sys_.iterate()
        got = count(next(it))
        t1 = time.perf_counter()
        steady = 0
        while got < n:
            k = count(next(it))
            got += k
            steady += k
            for frac in (0.1, 0.9):
                if f"{frac}" not in states and got >= frac * n:
                    states[f"{frac}"] = json.loads(json.dumps(state(), default=lambda o: o.tolist()))
        t2 = time.perf_counter()
        del it
    out = {"samples_per_s": steady / (t2 - t1), "first_batch_s": t1 - t0, "peak_rss_mib": rss.peak / 2**20}
    for frac, st in states.items():
        t0 = time.perf_counter()
        it, count, _ = sys_.iterate(st)
        next(it)
        out[f"resume_{frac}_s"] = time.perf_counter() - t0
        del it
    if isinstance(sys_, Mmlake):
        out["fill"] = sys_.fill()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--only", nargs="*", help="systems to run (default: all installed)")
    ap.add_argument("--workdir", default=None, help="keep the corpus here between runs")
    args = ap.parse_args()
    root = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mmlake-bench-loader-"))
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    info = build_corpus(root, args.images)
    if sys.platform == "linux":
        mp.set_start_method("fork", force=True)  # litdata.optimize switches the process to spawn
    print(f"corpus: {info['n']} JPEGs, {info['bytes'] / 2**20:.0f} MiB, ready in {time.perf_counter() - t:.1f}s; "
          f"{args.workers} workers, {os.cpu_count()} cores", flush=True)
    systems: list[System] = [Mmlake(info, args.workers, args), WebDatasetSys(info, args.workers, args)]
    if "mds" in info:
        systems.append(StreamingSys(info, args.workers, args))
    if "litdata" in info:
        systems.append(LitdataSys(info, args.workers, args))
    if args.only:
        systems = [s for s in systems if s.name in args.only]
    results: dict[str, list[dict[str, Any]]] = {"ceiling": []}
    for r in range(args.repeat):
        results["ceiling"].append(ceiling(info, args.workers, info["n"]))
        for s in systems:
            try:
                results.setdefault(s.name, []).append(run_system(s, info["n"]))
            except Exception as exc:  # noqa: BLE001 - a peer failing must not hide the others
                print(f"{s.name} failed: {type(exc).__name__}: {exc}", flush=True)
        print(f"repeat {r + 1}/{args.repeat} done", flush=True)
    med = {name: {k: statistics.median(x[k] for x in runs if k in x) for k in runs[0]}
           for name, runs in results.items() if runs}
    ceil = med["ceiling"]["samples_per_s"]
    cols = ["system", "samples/s", "x ceiling", "first batch s", "resume@10% s", "resume@90% s", "peak RSS MiB",
            "fill"]
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for name, m in med.items():
        row = [name, f"{m['samples_per_s']:.0f}", f"{m['samples_per_s'] / ceil:.2f}", f"{m['first_batch_s']:.2f}",
               f"{m['resume_0.1_s']:.2f}" if "resume_0.1_s" in m else "-",
               f"{m['resume_0.9_s']:.2f}" if "resume_0.9_s" in m else "-", f"{m['peak_rss_mib']:.0f}",
               f"{m['fill']:.3f}" if "fill" in m else "-"]
        print("| " + " | ".join(row) + " |")
    out = Path(__file__).parent / "results" / "loader.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "median": med, "runs": results}, indent=1))
    if not args.workdir:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
