"""Prometheus metrics of the registry (``GET /metrics``): requests, latency and errors by route,
and what the recorded pipeline runs did (samples in, kept, filtered / rejected by reason,
duplicates, seconds) in all and per stage, so one scrape of the registry shows the pipelines too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

__all__ = ["RegistryMetrics", "EXPORTED"]

#: every metric family this module exports (the Grafana dashboards' queries are checked against it)
EXPORTED = ("mmlake_registry_requests_total", "mmlake_registry_request_seconds", "mmlake_registry_errors_total",
            "mmlake_runs", "mmlake_pipeline_samples_total", "mmlake_pipeline_outcomes_total",
            "mmlake_pipeline_seconds_total", "mmlake_pipeline_stage_samples_total", "mmlake_pipeline_stage_removed_total",
            "mmlake_pipeline_stage_seconds_total")
RUN_WINDOW = 1000  # the newest runs summed per scrape


class RegistryMetrics:
    def __init__(self, reg: Any) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.reg = reg
        self.registry = CollectorRegistry()
        self.requests = Counter("mmlake_registry_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.errors = Counter("mmlake_registry_errors", "HTTP responses with status >= 500", ["route"],
                              registry=self.registry)
        self.seconds = Histogram("mmlake_registry_request_seconds", "request latency", ["method", "route"],
                                 registry=self.registry)
        self.registry.register(_Runs(reg))

    def middleware(self, app: Any) -> Any:
        """ASGI middleware: one observation per HTTP request, by route template (not raw path)."""
        metrics = self

        async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            status = [500]
            t0 = time.perf_counter()

            async def send_wrapper(msg: dict[str, Any]) -> None:
                if msg["type"] == "http.response.start":
                    status[0] = msg["status"]
                await send(msg)

            try:
                await app(scope, receive, send_wrapper)
            finally:
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                metrics.requests.labels(scope["method"], route, str(status[0])).inc()
                metrics.seconds.labels(scope["method"], route).observe(time.perf_counter() - t0)
                if status[0] >= 500:
                    metrics.errors.labels(route).inc()

        return wrapped

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)  # type: ignore[no-any-return]


class _Runs:
    """Runs by kind and status, and the pipelines' funnel summed over their succeeded runs."""

    def __init__(self, reg: Any) -> None:
        self.reg = reg

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        runs = self.reg.list_runs(limit=RUN_WINDOW)
        by = GaugeMetricFamily("mmlake_runs", f"runs by kind and status (newest {RUN_WINDOW})", labels=["kind", "status"])
        counts: dict[tuple[str, str], int] = {}
        samples = CounterMetricFamily("mmlake_pipeline_samples", "samples in and kept", labels=["pipeline", "what"])
        outcomes = CounterMetricFamily("mmlake_pipeline_outcomes", "filtered, rejected and duplicate samples by reason",
                                       labels=["pipeline", "outcome", "reason"])
        seconds = CounterMetricFamily("mmlake_pipeline_seconds", "wall time of succeeded runs", labels=["pipeline"])
        st_samples = CounterMetricFamily("mmlake_pipeline_stage_samples", "samples into and out of each stage",
                                         labels=["pipeline", "stage", "what"])
        st_removed = CounterMetricFamily("mmlake_pipeline_stage_removed", "samples a stage filtered, rejected or "
                                         "found duplicate, by reason", labels=["pipeline", "stage", "outcome", "reason"])
        st_seconds = CounterMetricFamily("mmlake_pipeline_stage_seconds", "seconds spent in each stage, summed over "
                                         "its tasks (and the dedupe decision)", labels=["pipeline", "stage"])
        sums: dict[tuple[str, ...], float] = {}
        for r in runs:
            counts[(r.kind, r.status)] = counts.get((r.kind, r.status), 0) + 1
            if r.kind != "pipeline" or r.status != "succeeded":
                continue
            c = r.counts or {}
            for what in ("samples_in", "kept"):
                _add(sums, ("s", r.name, what), c.get(what, 0))
            for outcome in ("filtered", "rejected"):
                for reason, n in (c.get(outcome) or {}).items():
                    _add(sums, ("o", r.name, outcome, reason), n)
            _add(sums, ("o", r.name, "duplicate", "duplicate"), c.get("duplicates", 0))
            for stage, sc in (c.get("stages") or {}).items():
                for what in ("in", "out"):
                    _add(sums, ("ss", r.name, stage, what), sc.get(what, 0))
                for k, n in (sc.get("removed") or {}).items():
                    outcome, _, reason = k.partition(":")
                    _add(sums, ("sr", r.name, stage, outcome, reason), n)
                _add(sums, ("st", r.name, stage), sc.get("seconds", 0.0))
            if r.started_at and r.ended_at:
                _add(sums, ("t", r.name), (datetime.fromisoformat(r.ended_at) -
                                           datetime.fromisoformat(r.started_at)).total_seconds())
        for (kind, status), n in sorted(counts.items()):
            by.add_metric([kind, status], n)
        for key, v in sorted(sums.items()):
            {"s": samples, "o": outcomes, "t": seconds, "ss": st_samples, "sr": st_removed,
             "st": st_seconds}[key[0]].add_metric(list(key[1:]), v)
        yield from (by, samples, outcomes, seconds, st_samples, st_removed, st_seconds)


def _add(sums: dict[tuple[str, ...], float], key: tuple[str, ...], v: float) -> None:
    sums[key] = sums.get(key, 0) + v
