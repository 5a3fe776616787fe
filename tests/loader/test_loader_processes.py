"""The loader across processes: a real SIGKILL and resume, torch.distributed (gloo) ranks that
change world size, S3 behind a throttling proxy, registry lifecycle, corrupt samples."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from loader import LoaderConfig, SourceSpec, build_loader
from tests.conftest import FaultProxy, free_port
from tests.loader.conftest import batch_digest, take

ROOT = Path(__file__).resolve().parents[2]

RUN = r"""
import json, os, sys, time
sys.path.insert(0, {root!r})
from loader import LoaderConfig, SourceSpec, build_loader
from tests.loader.conftest import batch_digest
cfg = LoaderConfig(sources=[SourceSpec({a!r}, 0.6), SourceSpec({b!r}, 0.4)], seq_len=256, batch_size=2,
                   pack_buffer=16, num_workers=int(sys.argv[1]), augment="default")
ld = build_loader(cfg)
if sys.argv[3] != "-":
    ld.load_state_dict(json.loads(open(sys.argv[3]).read().splitlines()[-1])["state"])
with open(sys.argv[2], "a") as out:
    for step, batch in enumerate(ld):
        out.write(json.dumps({{"digest": batch_digest(batch), "state": ld.state_dict()}}) + "\n")
        out.flush()
        os.fsync(out.fileno())
        if ld.step >= int(sys.argv[4]):
            break
        time.sleep(float(sys.argv[5]))
"""


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_sigkill_and_resume_gives_the_uninterrupted_sequence(versions: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "run.py"
    script.write_text(RUN.format(root=str(ROOT), a=versions["shapes"], b=versions["chat"]))
    full, killed, resumed = tmp_path / "full.jsonl", tmp_path / "killed.jsonl", tmp_path / "resumed.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, str(script), "0", str(full), "-", "12", "0"], check=True, env=env, timeout=120)
    # the same run with 2 workers, killed with SIGKILL after a few steps (no chance to clean up)
    proc = subprocess.Popen([sys.executable, str(script), "2", str(killed), "-", "12", "0.3"], env=env,
                            start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not killed.exists() or len(_lines(killed)) < 4):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done = _lines(killed)
    assert 4 <= len(done) < 12
    # resumed from the last checkpointed state, with 1 worker
    subprocess.run([sys.executable, str(script), "1", str(resumed), str(killed), "12", "0"], check=True, env=env,
                   timeout=120)
    got = [d["digest"] for d in done] + [d["digest"] for d in _lines(resumed)]
    assert got == [d["digest"] for d in _lines(full)]


DIST = r"""
import json, os, sys
sys.path.insert(0, {root!r})
import torch.distributed as dist
from loader import LoaderConfig, SourceSpec, build_loader
rank, world, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
dist.init_process_group("gloo", init_method="tcp://127.0.0.1:" + sys.argv[4], rank=rank, world_size=world)
cfg = LoaderConfig(sources=[SourceSpec({a!r})], seq_len=256, batch_size=2, pack_buffer=16, num_workers=0,
                   augment=None, rank=rank, world_size=world)
ld = build_loader(cfg)
if os.path.exists(sys.argv[5]):
    ld.load_state_dict(json.load(open(sys.argv[5])))  # every old rank's state
draws = []
for step, batch in enumerate(ld):
    draws += [d for row in batch["sample_draws"] for d in row]
    if step + 1 >= steps + rank % 2:
        break
states = [None] * world
dist.all_gather_object(states, ld.state_dict())
all_draws = [None] * world
dist.all_gather_object(all_draws, draws)
if rank == 0:
    json.dump(states, open(sys.argv[5] + ".new", "w"))
    json.dump(all_draws, open(sys.argv[6], "w"))
dist.destroy_process_group()
"""


def test_gloo_ranks_change_world_size_exactly_once(versions: dict[str, str], tmp_path: Path) -> None:
    """Real torch.distributed processes: 3 ranks, then 2, each gathering every rank's state
    with all_gather_object; then one process drains the epoch: every draw exactly once."""
    script = tmp_path / "dist.py"
    script.write_text(DIST.format(root=str(ROOT), a=versions["shapes"]))
    states = tmp_path / "states.json"
    delivered: list[tuple[int, int]] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for phase, (world, steps) in enumerate(((3, 3), (2, 4))):
        port = str(free_port())
        out = tmp_path / f"draws{phase}.json"
        procs = [subprocess.Popen([sys.executable, str(script), str(r), str(world), str(steps), port, str(states),
                                   str(out)], env=env) for r in range(world)]
        assert [p.wait(timeout=120) for p in procs] == [0] * world
        (tmp_path / "states.json.new").replace(states)
        delivered += [tuple(d) for per_rank in json.loads(out.read_text()) for d in per_rank]
    last = build_loader(LoaderConfig(sources=[SourceSpec(versions["shapes"])], seq_len=256, batch_size=2,
                                     pack_buffer=16, num_workers=0, augment=None))
    last.load_state_dict(json.loads(states.read_text()))
    it = iter(last)
    while {k for _, k in delivered if k < 240} != set(range(240)):
        delivered += [tuple(d) for row in next(it)["sample_draws"] for d in row]
        assert len(delivered) < 400
    assert max(Counter(delivered).values()) == 1


def _copy_to_s3(version_uri: str, name: str, endpoint: str) -> tuple[Any, str]:
    """The version's dataset folder copied to a fresh bucket; (the local version, its s3:// manifest URI)."""
    from datalake.store import S3Options, S3Store
    from datalake.version import DatasetVersion

    local = DatasetVersion.open(version_uri)
    bucket = f"{name}-{os.getpid()}-{time.monotonic_ns()}"
    s3 = S3Store(bucket, f"lake/datasets/{name}", S3Options(endpoint_url=endpoint))
    s3.create_bucket()
    root = Path(local.uri.removeprefix("file://")).parents[1]
    for f in sorted(root.rglob("*")):
        if f.is_file():
            s3.put(str(f.relative_to(root)), f.read_bytes())
    return local, f"s3://{bucket}/lake/datasets/{name}/versions/{local.uri.rsplit('/', 1)[1]}"


def test_s3_source_through_throttling_proxy_with_rate_limit(versions: dict[str, str], s3_endpoint: str,
                                                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same version copied to S3, read through a proxy answering 503 to the first requests
    and every 5th after, with a node rate limit: the batches equal the local ones, whole shards
    come once into the disk cache, and the request rate stays under the limit."""
    local, uri = _copy_to_s3(versions["small"], "small", s3_endpoint)
    kw = {"seq_len": 256, "batch_size": 2, "pack_buffer": 16, "augment": "default"}
    want = [batch_digest(b) for b in take(build_loader(LoaderConfig([SourceSpec(versions["small"])],
                                                                    num_workers=0, **kw)), 8)]
    with FaultProxy(s3_endpoint, fail_first=3, fail_every=5) as proxy:
        monkeypatch.setenv("MMLAKE_S3_ENDPOINT", proxy.url)
        ld = build_loader(LoaderConfig([SourceSpec(uri)], num_workers=2, cache_dir=str(tmp_path / "cache"),
                                       requests_per_s=20.0, **kw))
        t0 = time.monotonic()
        got = [batch_digest(b) for b in take(ld, 8)]
        elapsed = time.monotonic() - t0
    assert got == want
    assert proxy.failed >= 3  # 503s were answered, retried, and did not change the data
    cached = sorted(p.name for p in (tmp_path / "cache").glob("*.tar"))
    assert cached == sorted(f"{s.sha256}.tar" for s in local.manifest.shards)  # each shard once, whole
    m = ld.metrics()
    assert m["cache_hit_rate"] is not None and m["cache_hit_rate"] > 0.9
    # the node limit: 20 req/s split over 2 workers, each bucket starting full (a burst of 10 each);
    # a bound on the rate alone fails on short runs that fit inside the burst
    assert proxy.seen <= 20.0 * elapsed * 1.3 + 2 * 10 + 2
    # no disk cache: whole shards in each worker's memory, one GET per shard (and index), not per sample
    monkeypatch.setenv("MMLAKE_S3_ENDPOINT", s3_endpoint)
    mem = build_loader(LoaderConfig([SourceSpec(uri)], num_workers=0, cache_dir="off", **kw))
    assert [batch_digest(b) for b in take(mem, 8)] == want
    m = mem.metrics()
    shards = len(local.manifest.shards)
    assert m["store_requests"] <= 2 * shards + 2 < m["samples"] and m["cache_hit_rate"] > 0.8


def test_readahead_puts_the_next_shards_in_the_disk_cache(versions: dict[str, str], s3_endpoint: str,
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While the first batch is consumed, the shards of the elements after it are already being
    fetched whole into the node's cache, in plan order; with readahead=0 only what was read is there."""
    from loader.order import SourceOrder
    from loader.plan import RankPlan, Stream, decode_cursors

    local, uri = _copy_to_s3(versions["shapes"], "shapes", s3_endpoint)
    monkeypatch.setenv("MMLAKE_S3_ENDPOINT", s3_endpoint)
    shards = {s.sha256: j for j, s in enumerate(local.manifest.shards)}
    cached = {}
    for ahead in (0, 400):
        cache = tmp_path / f"cache{ahead}"
        ld = build_loader(LoaderConfig([SourceSpec(uri)], seq_len=256, batch_size=1, pack_buffer=4, num_workers=0,
                                       cache_dir=str(cache), readahead=ahead, augment=None))
        it = iter(ld)
        next(it)
        state = ld.state_dict()
        coming = RankPlan(Stream.from_json(state["stream"]), decode_cursors(state["cursors"]))
        order = SourceOrder(0, ld.sources[0].digest, ld.sources[0].sizes)
        want = []
        for (_, k), _, _ in (x for _, x in zip(range(300), coming, strict=False)):
            j = ld.sources[0].locate(order.draw(k)[1])[0]
            if j not in want:
                want.append(j)
        deadline = time.monotonic() + 90  # generous: the machine may be busy

        def done(cache: Path = cache) -> set[int]:  # whole shards only, not a ".tmp-*" file being written
            return {shards[p.stem] for p in cache.glob("*.tar") if not p.name.startswith(".")}

        while ahead and time.monotonic() < deadline and not set(want) <= done():
            time.sleep(0.1)
        cached[ahead] = done()
        it.close()
        if ahead:
            assert set(want) <= cached[ahead]  # the coming elements' shards are on local disk already
            assert ld.readahead is not None and set(want) <= {j for _, j in ld.readahead.fetched}
    assert len(cached[0]) < len(cached[400])  # without read-ahead only the shards read so far


NODE_RANK = r"""
import sys
sys.path.insert(0, {root!r})
from loader import LoaderConfig, SourceSpec, build_loader
rank = int(sys.argv[1])
ld = build_loader(LoaderConfig([SourceSpec({uri!r})], seq_len=256, batch_size=2, pack_buffer=16, num_workers=2,
                               rank=rank, world_size=2, cache_dir="off", mem_cache_bytes=0, augment=None,
                               requests_per_s={rate}))
for step, _ in enumerate(ld):
    if step + 1 >= {steps}:
        break
"""


def test_node_request_budget_is_shared_by_ranks_in_separate_processes(versions: dict[str, str], s3_endpoint: str,
                                                                     tmp_path: Path) -> None:
    """Two ranks of one node, each its own process with 2 workers, reading every sample with
    its own ranged GET: together they stay under the node's 8 requests/s (measured at the S3
    server's proxy) -- one shared budget, not 8 per rank or per worker."""
    local, uri = _copy_to_s3(versions["small"], "small", s3_endpoint)
    rate = 8.0
    script = tmp_path / "node_rank.py"
    script.write_text(NODE_RANK.format(root=str(ROOT), uri=uri, rate=rate, steps=6))
    with FaultProxy(s3_endpoint) as proxy:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "MMLAKE_S3_ENDPOINT": proxy.url,
               "MMLAKE_HOME": str(tmp_path / "node")}
        procs = [subprocess.Popen([sys.executable, str(script), str(r)], env=env) for r in range(2)]
        assert [p.wait(timeout=240) for p in procs] == [0, 0]
        times = sorted(proxy.times)
    assert (tmp_path / "node" / "cache" / "requests.bucket").exists()
    assert len(times) >= 40  # enough requests that the budget, not the work, sets the pace
    span = times[-1] - times[0]
    burst = rate  # the bucket starts full: one second's worth
    assert (len(times) - burst - 1) / span <= rate * 1.15, (len(times), span)


def test_registry_references_warn_when_deprecated_and_refuse_when_deleted(versions: dict[str, str],
                                                                         tmp_path: Path) -> None:
    from registry.service import Registry
    from registry.types import DeprecatedVersionWarning, LifecycleError

    url = f"sqlite:///{tmp_path / 'reg.db'}"
    reg = Registry(url)
    info = reg.register_version(versions["small"])
    kw = {"seq_len": 256, "batch_size": 2, "pack_buffer": 16, "augment": None, "num_workers": 0, "registry": url}
    ld = build_loader(LoaderConfig([SourceSpec("small@latest")], **kw))
    assert ld.sources[0].uri == info.manifest_uri and take(ld, 1)
    reg.transition(info.ref, "deprecated")
    with pytest.warns(DeprecatedVersionWarning, match="deprecated"):
        build_loader(LoaderConfig([SourceSpec(info.ref)], **kw))
    reg.transition(info.ref, "archived")
    reg.transition(info.ref, "deleted")
    with warnings.catch_warnings(), pytest.raises(LifecycleError, match="deleted"):
        warnings.simplefilter("ignore")
        build_loader(LoaderConfig([SourceSpec(info.ref)], **kw))


def test_corrupt_samples_are_skipped_the_same_way_and_a_broken_shard_is_fatal(lake_dir: Path, tmp_path: Path
                                                                              ) -> None:
    from datalake.version import Lake, write_version
    from synth.shapes import shape_samples

    lake = Lake.open(str(tmp_path / "lake"))
    v = write_version(lake, "broken", shape_samples(30, seed=5, size=(56, 56)), shard_samples=10)
    shard0 = v.shard(0)
    tar = Path(v.uri.removeprefix("file://")).parents[1] / v.manifest.shards[0].path
    data = bytearray(tar.read_bytes())
    for i in (2, 5):  # garble two JPEGs in place (same length)
        e = shard0.index.entries[i]
        off, size = e.members["0.jpg"]
        data[e.offset + off: e.offset + off + size] = b"\x00" * size
    tar.write_bytes(bytes(data))
    kw = {"seq_len": 256, "batch_size": 2, "pack_buffer": 8, "augment": None}
    runs, skipped = [], []
    for w in (0, 2):
        ld = build_loader(LoaderConfig([SourceSpec(v.uri)], num_workers=w, **kw))
        batches = take(ld, 6)
        runs.append([batch_digest(b) for b in batches])
        skipped.append(ld.metrics()["skipped"])
        keys = {k.split("/")[1] for b in batches for row in b["sample_keys"] for k in row}
        assert keys.isdisjoint({"s00002", "s00005"}) and len(keys) == 28
    assert runs[0] == runs[1]
    assert skipped[0] == skipped[1] and skipped[0]["undecodable image"] % 2 == 0  # each epoch skips both
    # every sample of the first shard broken: after 4 in a row the run stops, naming the place
    for e in shard0.index.entries:
        off, size = e.members["0.jpg"]
        data[e.offset + off: e.offset + off + size] = b"\x00" * size
    tar.write_bytes(bytes(data))
    ld = build_loader(LoaderConfig([SourceSpec(v.uri)], num_workers=0, max_consecutive_failures=4, **kw))
    with pytest.raises(RuntimeError, match=r"4 consecutive unreadable samples, the last one broken@\w+ shard "
                                           r"shards/\S+ key 's000\d\d'"):
        take(ld, 6)


def test_prometheus_metrics_and_progress_line(versions: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    ld = build_loader(LoaderConfig([SourceSpec(versions["shapes"], 0.5), SourceSpec(versions["small"], 0.5)],
                                   seq_len=256, batch_size=2, pack_buffer=16, num_workers=0, augment=None,
                                   metrics_port=port, progress=True, progress_every=0.0))
    take(ld, 3)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    assert 'mmlake_loader_samples_total{rank="0"}' in text
    mix = {line.split('source="')[1].split("@")[0]: float(line.rsplit(" ", 1)[1])
           for line in text.splitlines() if line.startswith("mmlake_loader_mixture_ratio")}
    assert set(mix) == {"shapes", "small"} and abs(mix["shapes"] - 0.5) < 0.15
    err = capsys.readouterr().err
    assert "[loader rank 0] step 3 |" in err and "samples/s" in err and "fill" in err
