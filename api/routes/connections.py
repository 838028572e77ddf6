"""Connections seen by tcplife: totals and top talkers by host, cgroup and remote endpoint, counts over
time, and the lifetime histogram."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from api.auth import Reader
from api.deps import QueryStoreDep
from api.queries import connections as cq
from api.routes.params import FromMs, StepS, ToMs, TopN, dimensions_of, unprocessable, window_of
from api.series import to_rows

router = APIRouter(prefix="/v1/connections", tags=["connections"])

ConnMetric = Literal["connections", "tx_bytes", "rx_bytes"]
Text = Annotated[str | None, Query(max_length=300, description="only connections with this value")]
Port = Annotated[int | None, Query(ge=0, le=65_535, description="only this remote port")]
Role = Annotated[Literal["client", "server", ""] | None, Query(description="client (active open), server "
                                                                           "(passive open), or '' (unknown)")]
ConnBy = Annotated[str, Query(max_length=100, description="comma-separated: host, cgroup, remote (raddr:rport), "
                              "role", examples=["host,remote"])]


class Group(BaseModel):
    labels: dict[str, str] = Field(examples=[{"host": "node-1", "remote": "10.0.3.4:5432"}])
    connections: int
    tx_bytes: int
    rx_bytes: int
    duration_ms_p50: float | None
    duration_ms_p95: float | None
    duration_ms_p99: float | None


class Groups(BaseModel):
    from_ms: int
    to_ms: int
    order: str
    groups: list[Group]


class Bucket(BaseModel):
    le_ms: int | None = Field(description="upper bound of the lifetime (ms); null = longer than every bound")
    count: int


class Histogram(BaseModel):
    from_ms: int
    to_ms: int
    total: int
    buckets: list[Bucket]


def _filters(host: Text = None, cgroup: Text = None, raddr: Text = None, rport: Port = None,
             role: Role = None) -> dict[str, Any]:
    return {"host": host, "cgroup": cgroup, "raddr": raddr, "rport": rport, "role": role}


Filters = Annotated[dict[str, Any], Depends(_filters)]


@router.get("", response_model=Groups, summary="Connections, bytes and lifetimes grouped (top talkers: order=bytes)")
def groups(_: Reader, store: QueryStoreDep, filters: Filters, by: ConnBy = "host",
           order: Literal["connections", "bytes"] = "connections", from_ms: FromMs = None,
           to_ms: ToMs = None, n: TopN = 20) -> Groups:
    dims = dimensions_of(by, cq.DIMENSIONS)
    window = window_of(from_ms, to_ms, bucketed=False)
    rows = cq.connection_totals(store, dims, filters, window, bucketed=False, order=order, limit=n)
    return Groups(from_ms=window.from_s * 1000, to_ms=window.to_s * 1000, order=order,
                  groups=[Group(labels={d: str(r.pop(d)) for d in dims}, **r) for r in rows])


@router.get("/series", summary="Connections or bytes per bucket over time (whole-minute steps)")
def series(_: Reader, store: QueryStoreDep, filters: Filters, metric: ConnMetric = "connections", by: ConnBy = "",
           from_ms: FromMs = None, to_ms: ToMs = None, step: StepS = None,
           format: Literal["series", "rows"] = "series") -> dict[str, Any] | list[dict[str, Any]]:
    dims = dimensions_of(by, cq.DIMENSIONS)
    window = window_of(from_ms, to_ms, step)
    if not window.uses_rollup:
        raise unprocessable(f"step {window.step_s} s: connection series come from the per-minute rollup; "
                            "use a multiple of 60 s")
    found: dict[tuple[str, ...], list[list[int]]] = {}
    for row in cq.connection_totals(store, dims, filters, window, bucketed=True):
        found.setdefault(tuple(str(row[d]) for d in dims), []).append([row["t"] * 1000, row[metric]])
    series_list = [{"labels": dict(zip(dims, key, strict=True)), "points": points} for key, points in found.items()]
    if format == "rows":
        return to_rows(series_list, metric)
    return {"metric": metric, "from_ms": window.from_s * 1000, "to_ms": window.to_s * 1000,
            "step_s": window.step_s, "series": series_list}


@router.get("/lifetimes", response_model=Histogram, summary="Histogram of connection lifetimes (ms)")
def lifetimes(_: Reader, store: QueryStoreDep, filters: Filters, from_ms: FromMs = None,
              to_ms: ToMs = None) -> Histogram:
    window = window_of(from_ms, to_ms, bucketed=False)
    buckets = cq.lifetime_histogram(store, filters, window)
    return Histogram(from_ms=window.from_s * 1000, to_ms=window.to_s * 1000,
                     total=sum(b["count"] for b in buckets), buckets=buckets)
