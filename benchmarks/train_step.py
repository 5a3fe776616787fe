"""Where does data loading become the bottleneck of training? Step time and data-wait share.

Trains the H200 config's model family at 3-4 sizes (fixed loader workers), and one size at
1, 2, 4, 8 loader workers, each for ``--warmup + --steps`` steps on the training lake
(``python -m training.prepare``), and prints per run: parameters (total / active), step time,
tokens/s, data-wait share of the step (time blocked in ``next()`` on the loader; medians over
the measured steps) and MFU. A bigger model gives the loader more time per batch; fewer
workers give it less throughput -- the table shows what it takes to stay under 2 %.

    MMLAKE_TRAIN_LAKE=.devlake/lake python benchmarks/train_step.py            # on a GPU
    python benchmarks/train_step.py --check-attention                          # backends agree?
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training.config import load_config  # noqa: E402

SIZES = {  # decoder dim, layers, heads, experts, expert_dim, vit dim, vit layers
    "xs": dict(dim=256, layers=4, heads=4, ffn_dim=704, experts=8, expert_dim=176, vit_dim=128, vit_layers=2,
               vit_heads=2),
    "s": dict(dim=512, layers=8, heads=8, ffn_dim=1408, experts=16, expert_dim=352, vit_dim=256, vit_layers=4,
              vit_heads=4),
    "m": dict(dim=1024, layers=12, heads=16, ffn_dim=2816, experts=16, expert_dim=704, vit_dim=512, vit_layers=8,
              vit_heads=8),
    "l": dict(dim=1280, layers=14, heads=20, ffn_dim=3584, experts=16, expert_dim=896, vit_dim=768,
              vit_layers=8, vit_heads=12),  # the H200 config
}


def check_attention() -> list[dict]:
    """Same batch through sdpa / flex / flash: max output and gradient differences."""
    from training.attention import VarlenMask, attend, available_backends

    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    g = torch.Generator().manual_seed(0)
    lens = torch.randint(16, 700, (24,), generator=g)
    cu = torch.cat([torch.zeros(1, dtype=torch.int64), lens.cumsum(0)]).to(torch.int32).to(dev)
    t = int(cu[-1])
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    q, k, v = (torch.randn(t, 8, 64, generator=g).to(dev, dtype) for _ in range(3))
    rows = []
    for causal in (True, False):
        outs = {}
        for b in available_backends(dev):
            print(f"  check-attention: {b} causal={causal} on {dev.type} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            grad = dev.type == "cuda" or b != "flex"  # FlexAttention has no CPU backward
            qq, kk, vv = (x.clone().requires_grad_(grad) for x in (q, k, v))
            o = attend(qq, kk, vv, VarlenMask(cu, causal, b))
            if grad:
                o.float().square().sum().backward()
            outs[b] = (o.detach().float(), qq.grad.float() if grad else torch.full_like(q, float("nan")).float())
            print(f"  check-attention: {b} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        ref_o, ref_g = outs["sdpa"]
        for b, (o, gq) in outs.items():
            rows.append({"backend": b, "causal": causal, "tokens": t, "segments": len(lens),
                         "max_abs_out_diff": float((o - ref_o).abs().max()),
                         "max_abs_grad_diff": float((gq - ref_g).abs().max()),
                         "out_scale": float(ref_o.abs().max())})
    return rows


def run_one(base: str, size: str, workers: int, steps: int, warmup: int, out: Path) -> dict:
    from training import train

    sets = {f"model.{k}": v for k, v in SIZES[size].items()}
    sets.update({"data.num_workers": workers, "train.steps": warmup + steps, "train.time_limit_s": 0,
                 "train.ckpt_every": 0, "train.register": False, "train.plot": False, "train.save": False,
                 "train.out": str(out / f"{size}-w{workers}"), "eval.dataset": None, "eval.every": 0})
    cfg = load_config(base, sets)
    t0 = time.perf_counter()
    train(cfg, progress=False)
    rows = [json.loads(x) for x in (out / f"{size}-w{workers}" / "log" / "rank0.jsonl").read_text().splitlines()]
    rows = rows[warmup:]
    from training.model import VLM

    pc = VLM(cfg.model, 0).param_counts()
    med = lambda k: float(np.median([r[k] for r in rows])) if rows and k in rows[0] else None  # noqa: E731
    return {"size": size, "params_m": pc["total"] / 1e6, "active_m": (pc["decoder_active"] + pc["vision"]) / 1e6,
            "workers": workers, "step_ms": 1e3 * med("step_s"), "tokens_per_s": med("tokens_per_s"),
            "data_wait_pct": 100 * float(np.sum([r["data_wait_s"] for r in rows]) / np.sum([r["step_s"] for r in rows])),
            "data_wait_median_pct": 100 * med("data_wait_share"), "mfu_pct": 100 * med("mfu") if med("mfu") else None,
            "wall_s": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "training" / "configs" / "h200.yaml"))
    ap.add_argument("--sizes", default="xs,s,m,l")
    ap.add_argument("--size-workers", type=int, default=8, help="loader workers for the size sweep")
    ap.add_argument("--workers", default="1,2,4,8", help="worker counts for the worker sweep")
    ap.add_argument("--workers-size", default="l", help="model size for the worker sweep")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--check-attention", action="store_true")
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args()
    rows: list[dict] = []
    if args.check_attention:
        rows = check_attention()
        print("| backend | causal | tokens | max |out - sdpa| | max |grad - sdpa| | max |out| |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['backend']} | {r['causal']} | {r['tokens']} | {r['max_abs_out_diff']:.2e} | "
                  f"{r['max_abs_grad_diff']:.2e} | {r['out_scale']:.2f} |", flush=True)
    else:
        runs = [(s, args.size_workers) for s in args.sizes.split(",") if s]
        runs += [(args.workers_size, int(w)) for w in args.workers.split(",") if w and
                 (args.workers_size, int(w)) not in runs]
        print("| size | params (M) | active (M) | workers | step (ms) | tokens/s | data wait (share of time) | "
              "data wait (median step) | MFU |")
        print("|---|---|---|---|---|---|---|---|---|")
        with tempfile.TemporaryDirectory() as tmp:
            for size, w in runs:
                r = run_one(args.config, size, w, args.steps, args.warmup, Path(tmp))
                rows.append(r)
                mfu = f"{r['mfu_pct']:.1f}%" if r["mfu_pct"] is not None else "-"
                print(f"| {size} | {r['params_m']:.0f} | {r['active_m']:.0f} | {w} | {r['step_ms']:.0f} | "
                      f"{r['tokens_per_s']:.0f} | {r['data_wait_pct']:.1f}% | {r['data_wait_median_pct']:.1f}% | {mfu} |",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
