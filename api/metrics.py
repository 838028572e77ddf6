"""The API's own Prometheus series, in a registry of their own: /metrics shows this process's API and
nothing else (a loader or weigh worker serves its series on its own port, even when `svcpulse up`
runs them in the same process). Values are read from the app's state when scraped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from api.routes.xds import REQUESTS as XDS_REQUESTS
from pipeline.store import StoreError


class _FeedCollector(Collector):
    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        weights, lease = getattr(self.state, "weights", None), getattr(self.state, "lease", None)
        if weights is None or lease is None:
            return
        services = list(weights.feeds)
        stale = sum(1 for s in services if weights.stale_reason(s))
        now_ms = time.time() * 1000
        oldest = max((now_ms - weights.feeds[s]["generated_at_ms"] for s in services), default=0.0) / 1000
        yield GaugeMetricFamily("svcpulse_api_feed_ready", "1 once this replica has read svcpulse.weights up to "
                                "its end at start", value=float(weights.ready))
        yield GaugeMetricFamily("svcpulse_api_feed_services", "services in the weight feed", value=len(services))
        yield GaugeMetricFamily("svcpulse_api_feed_stale_services", "services whose feed is served marked stale",
                                value=stale)
        yield GaugeMetricFamily("svcpulse_api_feed_oldest_seconds", "age of the oldest feed served",
                                value=oldest)
        yield GaugeMetricFamily("svcpulse_api_lease_held", "1 while this replica holds the lease (alarms, "
                                "webhooks, canary aborts)", value=float(lease.held()))


class _EmbeddedStoreCollector(Collector):
    """The in-process engine's memory (the embedded store only: a server's memory is the server's to report)."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lane = getattr(self.state, "query_store", None)
        memory_bytes = getattr(getattr(lane, "store", None), "memory_bytes", None)
        if memory_bytes is None:
            return
        try:
            held = memory_bytes()
        except StoreError:
            return  # a scrape must not fail with the store; the gauge is simply absent this time
        family = GaugeMetricFamily("svcpulse_store_memory_bytes", "memory the embedded store (chdb, in this "
                                   "process) holds, by ClickHouse's system.metrics name", labels=["metric"])
        for name, value in held.items():
            family.add_metric([name], value)
        yield family


def api_registry(state: Any) -> CollectorRegistry:
    """The registry /metrics serves: the feed and lease state of `state` (app.state), the embedded store's
    memory, the REST xDS requests, and the process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FeedCollector(state))
    registry.register(_EmbeddedStoreCollector(state))
    registry.register(XDS_REQUESTS)
    ProcessCollector(registry=registry)
    return registry
