"""Prometheus metrics of one `svcpulse balancer` process, computed at scrape time from the loop's state.

    svcpulse_balancer_applied_revision_info{balancer,service,revision} 1
    svcpulse_balancer_applies_total / _failures_total{stage=render|apply|verify}
    svcpulse_balancer_seconds_since_apply, _last_apply_timestamp_seconds, _last_apply_cpu_seconds
    svcpulse_balancer_feed_stale (1 = the API is unreachable or says its weights are stale)
    svcpulse_balancer_seconds_since_feed_contact
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

STAGES = ("render", "apply", "verify")


@dataclass
class LoopState:
    """What the loop did so far; written by the loop's thread, read by scrapes (plain fields, no locking
    needed for a consistent-enough snapshot of numbers)."""

    applied_revision: str = ""
    applies: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    last_apply_monotonic: float | None = None
    last_apply_unix: float = 0.0
    last_apply_cpu_s: float = 0.0  # CPU of the loop thread for the last apply (render excluded)
    feed_stale: bool = True  # until the first feed arrives
    contact_age: Callable[[], float | None] = lambda: None  # seconds since the API last answered
    last_error: str = ""


class LoopCollector(Collector):
    def __init__(self, balancer: str, service: str, state: LoopState) -> None:
        self.labels = {"balancer": balancer, "service": service}
        self.state = state

    def collect(self) -> Iterator[Metric]:
        s, names, values = self.state, list(self.labels), list(self.labels.values())
        info = GaugeMetricFamily("svcpulse_balancer_applied_revision_info", "Feed revision the balancer holds",
                                 labels=[*names, "revision"])
        if s.applied_revision:
            info.add_metric([*values, s.applied_revision], 1)
        yield info
        yield _counter("svcpulse_balancer_applies", "Changes applied to the balancer", names, values, s.applies)
        failures = CounterMetricFamily("svcpulse_balancer_failures", "Failed renders, applies and verifies "
                                       "(the last good state stays)", labels=[*names, "stage"])
        for stage in STAGES:
            failures.add_metric([*values, stage], s.failures[stage])
        yield failures
        since = -1.0 if s.last_apply_monotonic is None else time.monotonic() - s.last_apply_monotonic
        yield _gauge("svcpulse_balancer_seconds_since_apply", "Seconds since the last apply (-1: none yet)",
                     names, values, since)
        yield _gauge("svcpulse_balancer_last_apply_timestamp_seconds", "Unix time of the last apply",
                     names, values, s.last_apply_unix)
        yield _gauge("svcpulse_balancer_last_apply_cpu_seconds", "CPU time the last apply took in this process",
                     names, values, s.last_apply_cpu_s)
        yield _gauge("svcpulse_balancer_feed_stale", "1 when the feed is unreachable or marked stale: the last "
                     "applied weights stay", names, values, float(s.feed_stale))
        age = s.contact_age()
        age = -1.0 if age is None else age
        yield _gauge("svcpulse_balancer_seconds_since_feed_contact", "Seconds since the API last answered "
                     "(-1: never)", names, values, age)


def _gauge(name: str, doc: str, names: list[str], values: list[str], value: float) -> GaugeMetricFamily:
    metric = GaugeMetricFamily(name, doc, labels=names)
    metric.add_metric(values, value)
    return metric


def _counter(name: str, doc: str, names: list[str], values: list[str], value: float) -> CounterMetricFamily:
    metric = CounterMetricFamily(name, doc, labels=names)
    metric.add_metric(values, value)
    return metric


def serve_metrics(collector: Collector, host: str, port: int) -> tuple[object, threading.Thread]:
    """Serve /metrics from a registry holding only `collector`; returns (server, thread) to shut down."""
    registry = CollectorRegistry()
    registry.register(collector)
    return start_http_server(port, addr=host, registry=registry)
