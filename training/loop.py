"""The training run: ``train(cfg, resume=None)`` -- what ``mmlake train CONFIG [--resume PATH]`` calls.

One function per step of the recipe: set up the process group (``torchrun`` sets RANK /
WORLD_SIZE; gloo on CPU, NCCL on GPU), build the rank's loader slice and the model, restore a
checkpoint (model, optimizer, step, RNG, and the loader states of *all* old ranks, so a
different world size still delivers every sample exactly once), then per step: wait for the
next batch (the **data wait**, timed), forward under bf16 autocast on GPU, the loss averaged
per loss token over all ranks, backward, clip, step, MoE bias update from the all-reduced
expert loads, and one JSONL line per rank (loss total and per source, lr, tokens/s, step
time, data-wait share, MFU, GPU memory, expert load, grad norm, the step's ``sample_keys``).
Checkpoints every ``ckpt_every`` steps and at the end; a loss-curve PNG at the end; the run is
recorded in the registry as a ``train`` run whose inputs are the loader's dataset versions.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from loader import LoaderConfig, SourceSpec, build_loader
from training.checkpoint import check_compatible, latest_checkpoint, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.model import VLM
from training.optim import build_optimizers, lr_factor
from training.prefetch import Prefetcher
from training.report import plot, read_log, summarise

__all__ = ["train", "TrainResult", "loader_config", "PEAK_FLOPS"]

#: dense bf16 peak of the chips MFU is reported against (vendor datasheets)
PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


@dataclass
class TrainResult:
    steps: int = 0
    start_step: int = 0
    last_loss: float | None = None
    out: str = ""
    checkpoint: str | None = None
    run_id: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised: bool = False

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def gather(self, obj: Any) -> list[Any]:
        if self.world == 1:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _setup_dist(cfg: TrainConfig) -> _Dist:
    want = cfg.train.device
    cuda = torch.cuda.is_available() and want in ("auto", "cuda")
    if want == "cuda" and not torch.cuda.is_available():
        raise ValueError("train.device=cuda but no CUDA device is visible; use train.device=auto or cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    d = _Dist(rank, world, local)
    if cuda:
        torch.cuda.set_device(local)
        d.device = torch.device("cuda", local)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        d.initialised = True
    return d


def resolve_sources(cfg: TrainConfig) -> list[SourceSpec]:
    """The loader's sources; with ``data.lake``, dataset names resolve in that lake."""
    specs = [SourceSpec(**s) for s in cfg.data.sources]
    if not cfg.data.lake:
        return specs
    from datalake.version import Lake

    lake = Lake.open(os.path.expandvars(cfg.data.lake))
    return [s if "://" in s.dataset or s.dataset.endswith(".json") else
            SourceSpec(lake.manifest_uri(s.dataset), s.weight, s.max_synthetic) for s in specs]


def loader_config(cfg: TrainConfig, rank: int = 0, world: int = 1) -> LoaderConfig:
    dc = cfg.data
    return LoaderConfig(sources=resolve_sources(cfg), seed=cfg.train.seed, seq_len=dc.seq_len,
                        batch_size=dc.batch_size, num_workers=dc.num_workers, rank=rank, world_size=world,
                        tokenizer=dc.tokenizer, augment=dc.augment, max_pixels=dc.max_pixels, coords=dc.coords,
                        pack_buffer=dc.pack_buffer, prefetch=dc.prefetch, registry=dc.registry,
                        schedule=[tuple(p) for p in dc.schedule] if dc.schedule else None)


_HOST_KEYS = ("input_ids", "labels", "position_ids", "cu_seqlens")


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors to ``device`` (asynchronously from pinned memory); the small integer tensors stay
    on the host too (``<key>_host``), so the model reads shapes and counts without a sync."""
    out = dict(batch)
    for k, v in batch.items():
        if isinstance(v, torch.Tensor) and not k.endswith("_host"):
            out[k] = v.to(device, non_blocking=True)
    for k in _HOST_KEYS:
        out[f"{k}_host"] = batch[k]
    out["image_grid_hw"] = batch["image_grid_hw"]  # read on the host (grid shapes drive the ViT's layout)
    return out


def _loss_tokens(batch: dict[str, Any]) -> int:
    from training.model import _loss_tokens as count

    return count(batch["labels"], batch["position_ids"])


def _segment_sources(batch: dict[str, Any]) -> np.ndarray:
    """Source index of every flat segment of ``cu_seqlens`` (-1 for a row's padding)."""
    cu = batch["cu_seqlens"].tolist()
    seq_len = batch["input_ids"].shape[1]
    out: list[int] = []
    for r, draws in enumerate(batch["sample_draws"] or [[[0, 0]] * len(k) for k in batch["sample_keys"]]):
        out.extend(int(d[0]) for d in draws)
        end = cu[len(out)] if len(out) < len(cu) else cu[-1]
        if end < (r + 1) * seq_len:
            out.append(-1)
    if len(out) != len(cu) - 1:
        raise RuntimeError(f"internal: {len(out)} segments for {len(cu) - 1} cu_seqlens entries")
    return np.asarray(out)


def _per_source(out_tok_loss: torch.Tensor, mask: torch.Tensor, batch: dict[str, Any], n_sources: int,
                d: _Dist) -> torch.Tensor:
    """``[n_sources, 2]``: loss sum and loss-token count per source, summed over ranks."""
    cu = batch["cu_seqlens_host"]
    lengths = (cu[1:] - cu[:-1]).to(torch.int64)
    seg_of_tok = torch.repeat_interleave(torch.arange(len(lengths)), lengths).to(out_tok_loss.device)
    src = torch.from_numpy(_segment_sources(batch)).to(out_tok_loss.device)
    tok_src = src[seg_of_tok]
    keep = tok_src >= 0
    acc = torch.zeros(n_sources, 2, device=out_tok_loss.device, dtype=torch.float64)
    acc[:, 0].index_add_(0, tok_src[keep], out_tok_loss[keep].double())
    acc[:, 1].index_add_(0, tok_src[keep], mask[keep].double())
    return d.all_sum(acc)


def _peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


def _registry_start(cfg: TrainConfig, client: Any, loader: Any) -> str | None:
    if client is None or not cfg.train.register:
        return None
    refs = []
    for s in loader.sources:
        info = client.register_version(s.uri)  # idempotent: a version registered earlier is returned as is
        refs.append(getattr(info, "ref", None) or s.ref)
    run = client.start_run("train", f"train {Path(cfg.train.out).name}", inputs=refs,
                           spec={"type": "train", **cfg.to_json()},
                           parameters={"steps": cfg.train.steps, "seed": cfg.train.seed, "out": cfg.train.out})
    return run.id


def _ckpt_root(cfg: TrainConfig) -> str:
    return cfg.train.ckpt_dir or str(Path(cfg.train.out) / "checkpoints")


def _save(cfg: TrainConfig, d: _Dist, step: int, model: VLM, opts: Any, loader_state: dict[str, Any]
          ) -> str | None:
    states = d.gather(loader_state)
    path = None
    if d.rank == 0:
        extra = {"torch_rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}
        state = {"config": cfg.to_json(), "determinism": cfg.determinism(), "world_size": d.world,
                 "loader": states}
        path = save_checkpoint(_ckpt_root(cfg), step, model=model.state_dict(), optim=opts.state_dict(),
                               extra=extra, state=state, keep=cfg.train.keep)
    d.barrier()
    return path


def _resume(cfg: TrainConfig, resume: str, model: VLM, opts: Any, loader: Any) -> int:
    path = _ckpt_root(cfg) if resume in ("auto", "latest") else resume
    if resume in ("auto", "latest") and latest_checkpoint(path) is None:
        return 0
    ck = load_checkpoint(path)
    check_compatible(ck.state["determinism"], json.loads(json.dumps(cfg.determinism())), ck.where)
    model.load_state_dict(ck.model)
    opts.load_state_dict(ck.optim)
    torch.set_rng_state(ck.extra["torch_rng"])
    loader.load_state_dict(ck.state["loader"])
    return ck.step


def train(cfg: TrainConfig, resume: str | None = None, *, client: Any = None, progress: bool = True) -> TrainResult:
    """Run (or resume) training as configured; returns what was done."""
    d = _setup_dist(cfg)
    try:
        return _train(cfg, resume, client, progress, d)
    finally:
        if d.initialised:
            dist.destroy_process_group()


def _train(cfg: TrainConfig, resume: str | None, client: Any, progress: bool, d: _Dist) -> TrainResult:
    out = Path(cfg.train.out)
    (out / "log").mkdir(parents=True, exist_ok=True)
    loader = build_loader(loader_config(cfg, d.rank, d.world))
    tok = loader.tokenizer
    if tok.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"model.vocab_size {cfg.model.vocab_size} < the tokenizer's {tok.vocab_size} ({tok.name}); "
                         f"set model.vocab_size >= {tok.vocab_size}")
    model = VLM(cfg.model, tok.media_pad)
    model.init_weights(cfg.train.seed)
    model.to(d.device)
    backend = model.set_backend(d.device)
    opts = build_optimizers(model, cfg.optim)
    start = _resume(cfg, resume, model, opts, loader) if resume else 0
    res = TrainResult(start_step=start, out=str(out))
    fwd: Any = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # experts that get no token (and the ViT on a batch without images) leave parameters unused;
        # inputs stay where _to_device put them (device_ids=None: DDP moves nothing)
        fwd = DDP(model, device_ids=None, broadcast_buffers=False, find_unused_parameters=True)
    if cfg.train.compile and d.device.type == "cuda":
        for blk in list(model.layers) + list(model.vision.blocks):
            blk.compile()
    run_id = _registry_start(cfg, client, loader) if d.rank == 0 else None
    res.run_id = run_id
    amp = (torch.autocast("cuda", dtype=torch.bfloat16) if d.device.type == "cuda" and cfg.train.precision == "bf16"
           else nullcontext())
    peak = _peak_flops(d.device)
    names = [s.ref for s in loader.sources]
    plan = loader.cfg.weights_schedule()  # the user's planned mixture (before synthetic caps), by global position
    delivered = 0  # this rank's samples so far (the global position is about delivered * world)
    log_path = out / "log" / f"rank{d.rank}.jsonl"
    log = log_path.open("a")
    log_from = log.tell()  # this invocation's lines start here (a resumed run appends)
    evaluator = _Evaluator(cfg, model, d, amp) if cfg.eval.dataset and d.rank == 0 else None
    prom = None
    if cfg.train.metrics_port is not None:
        from training.metrics import TrainMetrics

        prom = TrainMetrics(cfg.train.metrics_port + d.local_rank, d.rank, loader)
    if d.rank == 0 and progress:
        pc = model.param_counts()
        print(f"[train] {pc['total'] / 1e6:.2f}M parameters ({pc['decoder_active'] / 1e6:.2f}M active in the decoder, "
              f"{pc['vision'] / 1e6:.2f}M vision), attention {backend}, {d.world} rank(s) on {d.device.type}, "
              f"steps {start}..{cfg.train.steps}", flush=True)
    t_start = time.monotonic()
    step = start
    status, error = "failed", None
    loader_state = loader.state_dict()
    pre = None
    try:
        pre = Prefetcher(loader, depth=2, pin=d.device.type == "cuda")
        for step in range(start, cfg.train.steps):
            t0 = time.perf_counter()
            batch, loader_state = pre.next()
            t_data = time.perf_counter() - t0
            row = _step(cfg, d, model, fwd, opts, batch, step, amp, names)
            dt = time.perf_counter() - t0
            row.update(step=step, rank=d.rank, step_s=dt, data_wait_s=t_data, data_wait_share=t_data / dt,
                       tokens_per_s=row["tokens"] / dt, sample_keys=batch["sample_keys"],
                       sample_draws=batch["sample_draws"],
                       mixture_planned=[round(w, 6) for w in plan.weights(delivered * d.world)])
            if step == start:
                row["source_names"] = names
            delivered += sum(len(k) for k in batch["sample_keys"])
            if peak:
                row["mfu"] = row["flops"] / dt / peak
            if d.device.type == "cuda":
                row["mem_gb"] = torch.cuda.max_memory_allocated(d.device) / 2**30
            log.write(json.dumps(row) + "\n")
            log.flush()
            if prom is not None:
                prom.update(row)
            res.last_loss = row["loss"]
            if d.rank == 0 and progress and (step % cfg.train.log_every == 0 or step + 1 == cfg.train.steps):
                print(f"[train] step {step} loss {row['loss']:.4f} | {row['tokens_per_s']:.0f} tok/s | "
                      f"step {dt * 1e3:.0f} ms, data wait {100 * row['data_wait_share']:.1f}%"
                      + (f" | MFU {100 * row['mfu']:.1f}%" if "mfu" in row else ""), flush=True)
            done = step + 1
            if cfg.train.ckpt_every and done % cfg.train.ckpt_every == 0 and done < cfg.train.steps:
                res.checkpoint = _save(cfg, d, done, model, opts, loader_state)
            if cfg.eval.every and done % cfg.eval.every == 0 and done < cfg.train.steps:
                if evaluator is not None:
                    evaluator.run(done)
                d.barrier()
            if cfg.train.time_limit_s > 0:
                stop = torch.tensor([float(time.monotonic() - t_start > cfg.train.time_limit_s)], device=d.device)
                if d.all_sum(stop).item() > 0:
                    break
        res.steps = step + 1 - start if cfg.train.steps > start else 0
        if cfg.train.save:
            res.checkpoint = _save(cfg, d, start + res.steps, model, opts, loader_state)
        if evaluator is not None:
            res.summary["eval"] = evaluator.run(start + res.steps)
        d.barrier()
        status = "succeeded"
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if pre is not None:
            pre.close()
        log.close()
        if d.rank == 0:
            res.summary = {**_summarise(log_path, log_from), **res.summary}
            if cfg.train.plot and status == "succeeded":
                try:
                    plot(read_log(log_path), out / "loss.png", f"mmlake train {out.name}")
                except ImportError:
                    pass
            if run_id is not None:
                client.finish_run(run_id, status, counts={"steps": res.steps, "start_step": start,
                                                          "checkpoint": res.checkpoint, **res.summary}, error=error)
    return res


def _step(cfg: TrainConfig, d: _Dist, model: VLM, fwd: Any, opts: Any, batch: dict[str, Any], step: int,
          amp: Any, names: list[str]) -> dict[str, Any]:
    dev = _to_device(batch, d.device)
    n_local = _loss_tokens(batch)
    n_global = int(d.all_sum(torch.tensor([n_local], device=d.device, dtype=torch.int64)).item())
    opts.set_lr(lr_factor(step, cfg.train.steps, cfg.optim))
    with amp:
        o = fwd(dev)
    aux = [m.aux for m in model.moe_layers() if m.aux is not None]
    loss = o.loss_sum * (d.world / max(1, n_global)) + (sum(aux) if aux else 0.0)
    loss.backward()
    gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip))
    opts.step()
    opts.zero_grad()
    loads = []
    if o.loads:
        stacked = d.all_sum(torch.stack(o.loads).to(torch.float32))
        for m, ld in zip(model.moe_layers(), stacked, strict=True):
            m.update_bias(ld)
        loads = stacked.tolist()
    per = _per_source(o.token_loss, o.loss_mask, dev, len(names), d).tolist()
    total = d.all_sum(torch.stack([o.loss_sum.detach().double(), torch.tensor(float(o.image_tokens), device=d.device,
                                                                     dtype=torch.float64)]))
    tokens = int((batch["segment_ids"] >= 0).sum())
    return {"loss": float(total[0]) / max(1, n_global), "loss_tokens": n_global,
            "loss_by_source": {n: (s / c if c else None) for n, (s, c) in zip(names, per, strict=True)},
            "lr": opts.lrs(), "tokens": tokens, "image_tokens": int(o.image_tokens), "grad_norm": gnorm,
            "flops": model.flops(batch), "expert_load": loads}


class _Evaluator:
    """The vision check on the held-out set, written to OUT/eval.jsonl (rank 0 only)."""

    def __init__(self, cfg: TrainConfig, model: VLM, d: _Dist, amp: Any) -> None:
        self.cfg, self.model, self.d, self.amp = cfg, model, d, amp

    def run(self, step: int) -> dict[str, Any]:
        from training.evaluate import eval_loader, evaluate_vision

        ld = eval_loader(self.cfg, self.cfg.eval.dataset)
        res = {"step": step, **evaluate_vision(self.model, ld, self.cfg.eval.batches, self.d.device, self.amp)}
        with (Path(self.cfg.train.out) / "eval.jsonl").open("a") as f:
            f.write(json.dumps(res) + "\n")
        t, s = res.get("true", {}), res.get("shuffled", {})
        print(f"[eval] step {step}: held-out loss {t.get('loss')} with true images, {s.get('loss')} shuffled; "
              f"colour acc {t.get('colour_acc')} vs {s.get('colour_acc')}, coordinate-digit acc "
              f"{t.get('digit_acc')} vs {s.get('digit_acc')}", flush=True)
        return res


def _summarise(log_path: Path, offset: int = 0) -> dict[str, Any]:
    return summarise(read_log(log_path, offset))
