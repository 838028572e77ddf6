"""The service map: who calls whom over a time range, with each service's and each edge's health
(docs/api.md, "Service map"). `format=grafana` answers Grafana's node graph frames instead."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import Reader
from api.deps import StoreDep, WeightsDep
from api.queries import map as mq
from api.queries import registry as reg
from api.routes.params import FromMs, ToMs, window_of
from api.servicemap import Inputs, build_map
from api.servicemap.health import MIN_SAMPLES
from api.servicemap.nodegraph import frames
from api.timerange import Window
from pipeline.store import Store

router = APIRouter(prefix="/v1/map", tags=["map"])

# A map reads five independent queries of counts; the store runs them side by side on its pooled
# connections (chdb: sessions), then one more for the latencies of what it draws. Three threads at most
# for every map request together, so maps never take all of the store's connections (pool=4 by default,
# chdb 3) from the other routes for long.
_QUERIES = ThreadPoolExecutor(max_workers=3, thread_name_prefix="svcpulse-map")
FEED_CURRENT_S = 300  # a range ending this close to now is "now" for the weight feed's states
Limit = Annotated[int, Query(ge=1, le=500, description="edges shown one by one (unhealthy first, then the "
                             "busiest); the rest are summed into one edge per target from 'other callers'")]
Format = Annotated[Literal["map", "grafana"], Query(description="map: nodes and edges with every figure; "
                   "grafana: the frames of Grafana's node graph panel (nodes: id, title, subtitle, mainstat, "
                   "secondarystat, arc__*, color; edges: id, source, target, mainstat, secondarystat, color)")]


class WorstInstance(BaseModel):
    instance: str
    calls: int
    failures: int


class Node(BaseModel):
    id: str = Field(examples=["svc:shop.checkout"], description="svc:, wl: (workload), ep: (endpoint), "
                    "ext:unknown (callers that sent no name), group:others")
    kind: Literal["service", "workload", "endpoint", "external", "group"]
    name: str
    title: str
    subtitle: str
    calls: int = Field(description="calls the service served in the range (its own measurement if any)")
    rps: float | None
    success_rate: float | None
    latency_ms_p99: float | None
    tcp_rate: float = Field(description="connections per second that reached this node (callers' TCP)")
    tcp_success_rate: float | None
    state: Literal["healthy", "degraded", "down", "unknown"] = Field(description="the weight feed's, now")
    state_why: str
    instances: dict[str, int] = Field(description="instances by feed state", examples=[{"healthy": 2, "degraded": 1}])
    workloads: list[dict[str, str]] = Field(description="workloads the service runs in (name, kind)")
    health: Literal["idle", "healthy", "warning", "critical"] = Field(description="of its calls in the range")
    why: list[str]
    color: str = Field(examples=["#ff9830"])


class Edge(BaseModel):
    id: str = Field(examples=["svc:shop.frontend->svc:shop.checkout"])
    source: str
    target: str
    protocols: list[Literal["rpc", "tcp"]]
    calls: int
    rps: float
    failures: int
    error_rate: float | None
    latency_ms_p50: float | None = Field(description="none on an edge from group:others (counts only)")
    latency_ms_p99: float | None
    measured_by: Literal["client", "server", ""] = Field(description="whose measurement the call figures are")
    slow_calls: int = Field(0, description="calls over a second: more than 1% of the calls makes p99 over a "
                            "second, a critical edge")
    worst_instance: WorstInstance | None = Field(description="the callee instance failing most of these calls")
    tcp_attempts: int
    tcp_rate: float
    tcp_failed: int = Field(description="connections that did not end ok (refused, timed out, reset...)")
    tcp_failure_rate: float | None
    tcp_retransmits: int
    tcp_resets: int
    grouped_edges: int = Field(0, description="on an edge from group:others: how many edges it sums")
    health: Literal["idle", "healthy", "warning", "critical"]
    why: list[str]
    color: str


class Omitted(BaseModel):
    edges: int = Field(description="edges neither shown nor grouped (their target is not on the map)")
    rps: float
    tcp_rate: float


class ServiceMap(BaseModel):
    from_ms: int
    to_ms: int
    limit: int
    nodes: list[Node]
    edges: list[Edge]
    omitted: Omitted


@router.get("", response_model=ServiceMap | dict[str, list[dict[str, Any]]],
            summary="Who calls whom: services, workloads and endpoints with their health, over a range")
def service_map(_: Reader, store: StoreDep, weights: WeightsDep, from_ms: FromMs = None, to_ms: ToMs = None,
                limit: Limit = 50, format: Format = "map") -> dict[str, Any]:
    window = window_of(from_ms, to_ms, bucketed=False)
    now_ms = int(time.time() * 1000)
    rows = _read(store, window, now_ms / 1000)
    pairs, callees = rows["calls"]
    inputs = Inputs(seconds=max(min(window.to_s, now_ms / 1000) - window.from_s, 1.0), pairs=pairs, callees=callees,
                    instances=rows["instances"], tcp=rows["tcp"], workloads=rows["workloads"],
                    registry=rows["registry"], feeds=weights.feeds,
                    feed_is_current=to_ms is None or to_ms >= now_ms - FEED_CURRENT_S * 1000)
    graph = build_map(inputs, limit, lambda pairs, callees: mq.latencies(store, window, pairs, callees, now_ms / 1000))
    if format == "grafana":
        return frames(graph)
    return {"from_ms": window.from_s * 1000, "to_ms": window.to_s * 1000, "limit": limit, **graph}


def _read(store: Store, window: Window, now_s: float) -> dict[str, Any]:
    """The map's rows of counts, its queries run side by side."""
    jobs = {"calls": (mq.call_totals, store, window, now_s), "tcp": (mq.tcp_links, store, window, now_s),
            "instances": (mq.instance_totals, store, window, MIN_SAMPLES, now_s),
            "workloads": (mq.cgroup_workloads, store, window), "registry": (reg.instances, store)}
    running = {name: _QUERIES.submit(*job) for name, job in jobs.items()}
    return {name: future.result() for name, future in running.items()}
