"""Prometheus metrics for a training run: ``train.metrics_port`` serves ``/metrics`` per rank.

Gauges hold the last logged step (loss, loss per source, tokens/s, step time, data-wait share,
MFU, GPU memory, learning rate, per-expert load share of each MoE layer); counters the steps
and tokens. The loader's own gauges (``mmlake_loader_*``) are served from the same endpoint.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainMetrics"]


class TrainMetrics:
    def __init__(self, port: int, rank: int, loader: Any = None, addr: str = "127.0.0.1") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.reg = CollectorRegistry()
        self.rank = str(rank)
        lab = ["rank"]
        g = lambda n, h, extra=(): Gauge(n, h, lab + list(extra), registry=self.reg)  # noqa: E731
        self.loss = g("mmlake_train_loss", "loss per loss token, last step")
        self.loss_src = g("mmlake_train_source_loss", "loss per loss token by source, last step", ["source"])
        self.tps = g("mmlake_train_tokens_per_second", "tokens per second, last step")
        self.step_s = g("mmlake_train_step_seconds", "wall time of the last step")
        self.wait = g("mmlake_train_data_wait_ratio", "share of the last step spent waiting for the loader")
        self.mfu = g("mmlake_train_mfu_ratio", "model FLOPs utilisation, last step")
        self.mem = g("mmlake_train_gpu_memory_bytes", "peak GPU memory allocated")
        self.lr = g("mmlake_train_learning_rate", "learning rate by optimizer", ["optimizer"])
        self.load = g("mmlake_train_expert_load_ratio", "share of routed tokens per expert", ["layer", "expert"])
        self.steps = Counter("mmlake_train_steps", "optimizer steps", lab, registry=self.reg)
        self.tokens = Counter("mmlake_train_tokens", "tokens trained on", lab, registry=self.reg)
        if loader is not None:
            from loader.metrics import LoaderCollector

            self.reg.register(LoaderCollector(loader))  # type: ignore[arg-type]
        self.server = start_http_server(port, addr=addr, registry=self.reg)

    def update(self, row: dict[str, Any]) -> None:
        r = self.rank
        self.loss.labels(r).set(row["loss"])
        for src, v in row["loss_by_source"].items():
            if v is not None:
                self.loss_src.labels(r, src).set(v)
        self.tps.labels(r).set(row["tokens_per_s"])
        self.step_s.labels(r).set(row["step_s"])
        self.wait.labels(r).set(row["data_wait_share"])
        if "mfu" in row:
            self.mfu.labels(r).set(row["mfu"])
        if "mem_gb" in row:
            self.mem.labels(r).set(row["mem_gb"] * 2**30)
        for name, v in row["lr"].items():
            self.lr.labels(r, name).set(v)
        for layer, loads in enumerate(row["expert_load"]):
            total = sum(loads) or 1.0
            for e, n in enumerate(loads):
                self.load.labels(r, str(layer), str(e)).set(n / total)
        self.steps.labels(r).inc()
        self.tokens.labels(r).inc(row["tokens"])
