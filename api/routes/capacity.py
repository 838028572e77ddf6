"""Capacity per service and instance: load, CPU, rps per core, estimated capacity, headroom, forecast and a
scale-out/in recommendation (the method: api/capacity.py and docs/capacity.md)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from api import capacity as cap
from api.auth import Reader
from api.deps import QueryStoreDep, SettingsDep
from api.queries import capacity as cq
from api.queries.timeseries import Selector, Side, rpc_aggregates, service_names
from api.routes.params import SideQ, WindowS
from api.routes.weights import ServiceName
from api.timerange import last_minutes
from pipeline.store import Store

router = APIRouter(prefix="/v1/capacity", tags=["capacity"])

TargetCpu = Annotated[float | None, Query(gt=0, le=1, description="target CPU utilisation (default from settings, "
                                          "0.7)")]
SloMs = Annotated[float | None, Query(gt=0, description="p99 SLO in ms (default from settings, 300)")]
HorizonDays = Annotated[float, Query(gt=0, le=365, description="forecast horizon for the recommendation")]
HistoryDays = Annotated[int, Query(ge=1, le=31, description="days of per-minute history for the trend")]


class InstanceCapacity(BaseModel):
    instance: str = Field(examples=["10.0.0.7:8080"])
    rps: float
    cpu_cores: float | None = Field(description="cores used (mean over the window)")
    cpu_limit_cores: float | None = Field(description="cores available (cgroup limit); 0/null = unknown")
    rps_per_core: float | None
    capacity_rps: float | None
    basis: str = Field(description="which bound set capacity_rps: cpu, latency or unknown")
    headroom_pct: float | None


class Forecast(BaseModel):
    peaks: str = Field(description="day (daily peaks) or hour (hourly, with under 3 days of history)")
    points: int
    growth_rps_per_day: float | None
    peak_at_horizon_rps: float | None
    days_to_saturation: float | None = Field(description="0 = already at capacity; null = not rising or unknown")


class Recommendation(BaseModel):
    change_instances: int = Field(description="+N scale out, -N scale in, 0 keep", examples=[2])
    reason: str = Field(examples=["scale out by 2: demand 410.0 rps at 70.0 rps per instance needs 6 instance(s) "
                                  "(minimum 2); 4 running"])


class ServiceCapacity(BaseModel):
    service: str
    window_s: int
    rps: float
    capacity_rps: float | None
    per_instance_capacity_rps: float | None
    headroom_pct: float | None
    latency_bound_rps_per_instance: float | None
    latency_fit: str = Field(description="how the p99-vs-rps fit went, in words")
    forecast: Forecast
    recommendation: Recommendation
    instances: list[InstanceCapacity]


class AllCapacity(BaseModel):
    services: list[ServiceCapacity]


def _plan(store: Store, service: str, targets: cap.Targets, window_s: int, history_days: int,
          side: Side) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    window = last_minutes(now_ms, window_s)
    seconds = max(now_ms / 1000 - window.from_s, 1.0)
    rows = rpc_aggregates(store, Selector.of(side, service=service), ("instance",), window, bucketed=False)
    cpu = cq.instance_cpu(store, [r["instance"] for r in rows], window.from_s, window.to_s)
    loads = [cap.InstanceLoad(r["instance"], r["calls"] / seconds, cpu.get(r["instance"], {}).get("cpu_cores"),
                              cpu.get(r["instance"], {}).get("cpu_limit_cores")) for r in rows]
    this_minute = now_ms // 60_000 * 60  # a minute still filling would read as a load drop
    history = cq.minute_history(store, service, side, this_minute - history_days * cap.DAY_S, this_minute)
    return {"service": service, "window_s": window_s, **cap.plan(loads, history, now_ms // 1000, targets)}


def _targets(settings: SettingsDep, target_cpu: float | None, slo_p99_ms: float | None,
             horizon_days: float) -> cap.Targets:
    return cap.Targets(cpu_utilisation=target_cpu or settings.capacity_target_cpu,
                       slo_p99_ms=slo_p99_ms or settings.capacity_slo_p99_ms, horizon_days=horizon_days,
                       min_instances=settings.capacity_min_instances)


@router.get("", response_model=AllCapacity, summary="Capacity of every service with calls in the window")
def all_capacity(_: Reader, store: QueryStoreDep, settings: SettingsDep, target_cpu: TargetCpu = None,
                 slo_p99_ms: SloMs = None, horizon_days: HorizonDays = 14, history_days: HistoryDays = 14,
                 window_s: WindowS = 300, side: SideQ = "server") -> AllCapacity:
    targets = _targets(settings, target_cpu, slo_p99_ms, horizon_days)
    names = service_names(store, last_minutes(int(time.time() * 1000), window_s))
    return AllCapacity(services=[ServiceCapacity(**_plan(store, n, targets, window_s, history_days, side))
                                 for n in names])


@router.get("/{service}", response_model=ServiceCapacity, summary="One service's capacity and recommendation",
            responses={404: {"description": "no calls of the service in the window"}})
def service_capacity(service: ServiceName, _: Reader, store: QueryStoreDep, settings: SettingsDep,
                     target_cpu: TargetCpu = None, slo_p99_ms: SloMs = None, horizon_days: HorizonDays = 14,
                     history_days: HistoryDays = 14, window_s: WindowS = 300,
                     side: SideQ = "server") -> ServiceCapacity:
    plan = _plan(store, service, _targets(settings, target_cpu, slo_p99_ms, horizon_days), window_s, history_days,
                 side)
    if not plan["instances"]:
        raise HTTPException(404, f"no calls of service {service!r} in the last {window_s} s: nothing to estimate")
    return ServiceCapacity(**plan)
