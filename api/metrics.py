"""The API's own Prometheus series, in a registry of their own: /metrics shows this process's API and
nothing else (a loader or weigh worker serves its series on its own port, even when `svcpulse up`
runs them in the same process). Values are read from the app's state when scraped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


class _MallocCollector(Collector):
    """glibc malloc's view of this process (Python's large objects, librdkafka, bcc; chdb has its own
    jemalloc): with the store's jemalloc figures it tells which allocator a growing RSS is in."""

    def __init__(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        self._mallinfo2 = getattr(libc, "mallinfo2", None)  # glibc >= 2.33; absent elsewhere (musl)
        if self._mallinfo2 is not None:
            self._mallinfo2.restype = _MallInfo2

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self._mallinfo2 is None:
            return
        info = self._mallinfo2()
        family = GaugeMetricFamily("svcpulse_process_malloc_bytes", "glibc malloc in this process (mallinfo2): "
                                   "in_use, free (kept in its arenas), mmapped (large blocks)", labels=["kind"])
        family.add_metric(["in_use"], info.uordblks)
        family.add_metric(["free"], info.fordblks)
        family.add_metric(["mmapped"], info.hblkhd)
        yield family


def api_registry(state: Any) -> CollectorRegistry:
    """The registry /metrics serves: the feed and lease state of `state` (app.state), the embedded store's
    memory, the REST xDS requests, and the process (with its malloc)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FeedCollector(state))
    registry.register(_EmbeddedStoreCollector(state))
    registry.register(XDS_REQUESTS)
    registry.register(_MallocCollector())
    ProcessCollector(registry=registry)
    return registry
