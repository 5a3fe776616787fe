"""A training run's step log as figures and a picture: ``python -m training.report RUN/log/rank0.jsonl``.

Prints the medians the README quotes (tokens/s, step time, MFU, data-wait share with its 99th
percentile and worst step, peak memory, expert balance, loss) and, with ``--png``, draws the
loss per source, the data-wait share of each step against the 2 % goal, and the MFU. The
training loop draws the same picture at the end of a successful run (``OUT/loss.png``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["read_log", "summarise", "plot", "mixture"]

GOAL_WAIT = 0.02


def read_log(path: str | Path, offset: int = 0) -> list[dict[str, Any]]:
    with Path(path).open() as f:
        f.seek(offset)
        return [json.loads(x) for x in f.read().splitlines() if x.strip()]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the steps after the first fifth (warm-up, compilation, loader start)."""
    if not rows:
        return {}
    tail = rows[len(rows) // 5:] or rows
    med = lambda k: float(np.median([r[k] for r in tail if k in r])) if any(k in r for r in tail) else None  # noqa: E731
    loads = [ld for r in tail for ld in r.get("expert_load", [])]
    balance = None
    if loads:
        arr = np.asarray(loads, dtype=np.float64)
        balance = float(np.median(arr.max(1) / np.maximum(1e-9, arr.mean(1))))
    waits = np.asarray([r["data_wait_share"] for r in rows[1:] or rows], dtype=np.float64)
    return {"steps_logged": len(rows), "first_loss": rows[0]["loss"], "last_loss": rows[-1]["loss"],
            "last50_median_loss": float(np.median([r["loss"] for r in rows[-50:]])),
            "median_step_s": med("step_s"), "median_tokens_per_s": med("tokens_per_s"),
            "median_data_wait_share": med("data_wait_share"),
            "mean_data_wait_share": float(np.mean([r["data_wait_s"] for r in tail]) / np.mean([r["step_s"] for r in tail])),
            "p99_data_wait_share": float(np.percentile(waits, 99)), "max_data_wait_share": float(waits.max()),
            "steps_over_goal": int((waits > GOAL_WAIT).sum()),
            "step_time_s": float(sum(r["step_s"] for r in rows)),
            "median_mfu": med("mfu"), "peak_mem_gb": max((r.get("mem_gb", 0.0) for r in rows), default=None),
            "expert_max_over_mean": balance}


def mixture(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Planned against realised source proportions over the steps, from the per-step log: the
    realised share is cumulative (samples of each source over all samples so far, from
    ``sample_draws``), the planned one the schedule at that point (``mixture_planned``)."""
    rows = [r for r in rows if r.get("sample_draws") and r.get("mixture_planned")]
    if not rows:
        return None
    k = len(rows[0]["mixture_planned"])
    names = next((r["source_names"] for r in rows if r.get("source_names")), [f"source {i}" for i in range(k)])
    counts = np.zeros(k)
    planned_sum = np.zeros(k)
    realised, planned = [], []
    for r in rows:
        draws = [d[0] for row in r["sample_draws"] for d in row]
        counts += np.bincount(np.asarray(draws, dtype=np.int64), minlength=k)[:k]
        planned_sum += np.asarray(r["mixture_planned"]) * len(draws)
        realised.append((counts / max(1.0, counts.sum())).tolist())
        planned.append((planned_sum / max(1.0, counts.sum())).tolist())
    err = np.abs(np.asarray(realised[-1]) - np.asarray(planned[-1]))
    return {"sources": names, "steps": [r["step"] for r in rows], "realised": realised, "planned": planned,
            "samples": int(counts.sum()), "final_max_abs_error": float(err.max())}


def plot(rows: list[dict[str, Any]], png: str | Path, title: str = "") -> None:
    """Loss per source (log scale), data-wait % of each step, MFU % -- side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    steps = [r["step"] for r in rows]
    mix = mixture(rows)
    panels = (3 if any(r.get("mfu") is not None for r in rows) else 2) + (mix is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.3 * panels, 3.6), dpi=110)
    ax = axes[0]
    ax.plot(steps, [r["loss"] for r in rows], label="all", color="black", linewidth=1.2)
    for name in rows[-1].get("loss_by_source", {}):
        pts = [(r["step"], r["loss_by_source"][name]) for r in rows if r.get("loss_by_source", {}).get(name) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=name.split("@")[0], linewidth=0.8, alpha=0.8)
    ax.set(title="loss per loss token", xlabel="step", yscale="log")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(steps[1:], [100 * r["data_wait_share"] for r in rows[1:]], linewidth=0.7)
    ax.axhline(100 * GOAL_WAIT, color="red", linestyle="--", linewidth=0.8, label="goal 2 %")
    ax.set(title="data wait, % of step", xlabel="step", ylim=(0, 5))
    ax.legend()
    if any(r.get("mfu") is not None for r in rows):
        ax = axes[2]
        ax.plot(steps[1:], [100 * (r.get("mfu") or 0) for r in rows[1:]], linewidth=0.7)
        ax.set(title="MFU %", xlabel="step", ylim=(0, 25))
    if mix is not None:  # the training-mixture view: planned (dashed) against realised, cumulative
        ax = axes[-1]
        for i, name in enumerate(mix["sources"]):
            line, = ax.plot(mix["steps"], [100 * r[i] for r in mix["realised"]], linewidth=1.0,
                            label=name.split("@")[0])
            ax.plot(mix["steps"], [100 * p[i] for p in mix["planned"]], linestyle="--", linewidth=0.8,
                    color=line.get_color())
        ax.set(title="mixture: realised vs planned (--), %", xlabel="step", ylim=(0, 100))
        ax.legend(fontsize=7)
    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m training.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("log", help="a step log (RUN/log/rank0.jsonl)")
    ap.add_argument("--png", help="also draw the picture here")
    ap.add_argument("--title", default="")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = ap.parse_args(argv)
    rows = read_log(args.log)
    s = summarise(rows)
    mix = mixture(rows)
    if mix is not None:
        s["mixture"] = {"sources": mix["sources"], "realised": [round(x, 4) for x in mix["realised"][-1]],
                        "planned": [round(x, 4) for x in mix["planned"][-1]],
                        "final_max_abs_error": round(mix["final_max_abs_error"], 4), "samples": mix["samples"]}
    if args.json:
        print(json.dumps(s, indent=1))
    else:
        for k, v in s.items():
            print(f"{k:24s} {v:.4g}" if isinstance(v, float) else f"{k:24s} {v}")
    if args.png:
        plot(rows, args.png, args.title)


if __name__ == "__main__":
    main()
