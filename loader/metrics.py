"""Prometheus metrics for a loader: ``LoaderConfig(metrics_port=9400)`` serves ``/metrics``.

Gauges are read from ``Loader.metrics()`` at scrape time (a custom collector), so the
training loop pays nothing between scrapes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["LoaderCollector", "serve_metrics"]


class LoaderCollector:
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m = self.loader.metrics()
        rank = str(self.loader.cfg.rank)
        for name, help_, value in (
            ("mmlake_loader_samples_per_second", "samples delivered per second", m["samples_per_s"]),
            ("mmlake_loader_tokens_per_second", "tokens delivered per second", m["tokens_per_s"]),
            ("mmlake_loader_fill_ratio", "share of packed token slots holding a sample", m["fill"]),
            ("mmlake_loader_cache_hit_ratio", "shard disk-cache hit rate", m["cache_hit_rate"] or 0.0),
            ("mmlake_loader_store_requests_per_second", "object-store requests per second",
             m["store_requests_per_s"]),
        ):
            g = GaugeMetricFamily(name, help_, labels=["rank"])
            g.add_metric([rank], float(value))
            yield g
        c = CounterMetricFamily("mmlake_loader_samples", "samples delivered", labels=["rank"])
        c.add_metric([rank], m["samples"])
        yield c
        c = CounterMetricFamily("mmlake_loader_skipped", "samples skipped, by reason", labels=["rank", "reason"])
        for reason, n in m["skipped"].items():
            c.add_metric([rank, reason], n)
        yield c
        g = GaugeMetricFamily("mmlake_loader_mixture_ratio", "realised share of each source", labels=["rank", "source"])
        for src, share in m["mixture"].items():
            g.add_metric([rank, src], share)
        yield g


def serve_metrics(loader: Any, port: int, addr: str = "127.0.0.1") -> Any:
    """Serve this loader's metrics on ``http://addr:port/metrics`` (own registry, own thread)."""
    from prometheus_client import CollectorRegistry, start_http_server

    reg = CollectorRegistry()
    reg.register(LoaderCollector(loader))  # type: ignore[arg-type]
    return start_http_server(port, addr=addr, registry=reg)
