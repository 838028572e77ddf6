"""Per-instance connection health of one service, from callers' TCP connections (collect tcp).

The latest value is what the weight engine judges: the last `weights_window_s` seconds of client-side
connections to each instance's ip:port (raw table). The series are per step from the per-minute
tcp_health_1m rollup. Instances are the service's registered ones and those in its feed; only IP
instances can match connections (the collector sees addresses, not names).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.auth import Reader
from api.deps import SettingsDep, StoreDep, WeightsDep
from api.queries import registry as reg
from api.queries import tcp_health as th
from api.routes.params import FromMs, StepS, ToMs, unprocessable, window_of
from api.routes.weights import ServiceName
from weights.tcp import TcpWindow
from weights.tcp_inputs import canonical, split_endpoint

router = APIRouter(prefix="/v1/services", tags=["query"])


class Figures(BaseModel):
    attempts: int = Field(description="connections that ended (client side)", examples=[480])
    ok_rate: float | None = Field(description="share neither refused, timed out, unreachable nor reset",
                                  examples=[0.998])
    refused: int
    timeouts: int
    unreachable: int
    resets: int = Field(description="established connections the instance reset")
    aborted: int = Field(description="connections the callers reset (their choice, not a failure)")
    retransmits: int
    connect_ms_p50: float = Field(description="handshake time; 0 = none completed", examples=[0.4])
    connect_ms_p99: float
    srtt_ms_p50: float = Field(description="smoothed RTT at close; 0 = no sample", examples=[0.3])
    srtt_ms_p99: float


class Point(Figures):
    t_ms: int


class InstanceConnections(BaseModel):
    instance: str = Field(examples=["10.0.0.7:8080"])
    latest: Figures | None = Field(description="over the engine's window; null: no connection in it")
    series: list[Point]


class ServiceConnections(BaseModel):
    service: str
    window_s: int = Field(description="what `latest` covers")
    from_ms: int
    to_ms: int
    step_s: int
    instances: list[InstanceConnections]


def _figures(tcp: TcpWindow) -> dict[str, Any]:
    return {name: getattr(tcp, name) for name in (*th.COUNTS, "connect_ms_p50", "connect_ms_p99", "srtt_ms_p50",
                                                   "srtt_ms_p99")} | {"ok_rate": tcp.success_rate}


def _point(row: dict[str, Any]) -> Point:
    return Point(**row, ok_rate=TcpWindow(**{name: row[name] for name in th.COUNTS}).success_rate)


@router.get("/{service}/connections", response_model=ServiceConnections,
            summary="Per-instance connection health (callers' TCP): latest value and series")
def service_connections(service: ServiceName, _: Reader, store: StoreDep, weights: WeightsDep,
                        settings: SettingsDep, from_ms: FromMs = None, to_ms: ToMs = None,
                        step: StepS = None) -> ServiceConnections:
    window = window_of(from_ms, to_ms, step)
    if not window.uses_rollup:
        raise unprocessable(f"step {window.step_s} s: connection health comes from the per-minute rollup; "
                            "use a multiple of 60 s")
    names = {r["instance"] for r in reg.instances(store, service)}
    names |= {r["instance"] for r in weights.feeds.get(service, {}).get("instances", [])}
    endpoints = {name: canonical(name) for name in sorted(names) if split_endpoint(name) is not None}
    ports = {int(e.rsplit(":", 1)[1]) for e in endpoints.values()}
    latest = th.tcp_windows(store, int(time.time() * 1000), settings.weights_window_s, ports)
    series = th.health_series(store, set(endpoints.values()), window)
    rows = [InstanceConnections(instance=name, series=[_point(p) for p in series.get(endpoint, [])],
                                latest=Figures(**_figures(latest[endpoint])) if endpoint in latest else None)
            for name, endpoint in endpoints.items()]
    return ServiceConnections(service=service, window_s=settings.weights_window_s, from_ms=window.from_s * 1000,
                              to_ms=window.to_s * 1000, step_s=window.step_s, instances=rows)
