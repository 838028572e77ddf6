"""Services with a health summary, and the instances and interfaces of one service.

Health is read from the per-minute rollup over the last `window_s` (default 5 min, whole minutes,
the current minute included); rps divides by the seconds actually covered so far.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.auth import Reader
from api.deps import StoreDep
from api.queries import registry as reg
from api.queries.timeseries import Selector, Side, rpc_aggregates
from api.routes.params import SideQ, WindowS
from api.routes.weights import ServiceName
from api.series import summary
from api.timerange import Window, last_minutes

router = APIRouter(prefix="/v1/services", tags=["query"])


class Health(BaseModel):
    calls: int = Field(examples=[1520])
    rps: float = Field(examples=[5.07])
    success_rate: float | None = Field(description="(calls - errors - timeouts) / calls; null without calls",
                                       examples=[0.998])
    latency_ms_p50: float | None = Field(examples=[3.1])
    latency_ms_p95: float | None = Field(examples=[12.4])
    latency_ms_p99: float | None = Field(examples=[41.0])


class ServiceHealth(Health):
    service: str = Field(examples=["shop.cart"])
    registered: bool = Field(description="in the registry (else only seen in calls)")


class InstanceHealth(Health):
    instance: str = Field(examples=["10.0.0.7:8080"])
    version: str = Field(description="the newest version label seen (or registered)", examples=["v2"])
    registered: bool


class InterfaceHealth(Health):
    interface: str = Field(examples=["GET /cart/{id}"])


class Services(BaseModel):
    window_s: int
    services: list[ServiceHealth]


class Instances(BaseModel):
    service: str
    window_s: int
    instances: list[InstanceHealth]


class Interfaces(BaseModel):
    service: str
    window_s: int
    interfaces: list[InterfaceHealth]


def _recent(store: StoreDep, window_s: int, side: Side, by: tuple[str, ...],
            service: str | None = None) -> tuple[dict[tuple[str, ...], dict[str, Any]], float]:
    """Rows keyed by their `by` values, and the seconds the window covers so far."""
    now_ms = int(time.time() * 1000)
    window: Window = last_minutes(now_ms, window_s)
    rows = rpc_aggregates(store, Selector.of(side, service=service), by, window, bucketed=False)
    return {tuple(r[d] for d in by): r for r in rows}, max(now_ms / 1000 - window.from_s, 1.0)


@router.get("", response_model=Services, summary="Services (registered or seen) with rps, success and p99")
def list_services(_: Reader, store: StoreDep, window_s: WindowS = 300, side: SideQ = "server") -> Services:
    seen, seconds = _recent(store, window_s, side, ("service",))
    registered = {s["service"] for s in reg.services(store)}
    names = sorted(registered | {key[0] for key in seen if key[0]})
    return Services(window_s=window_s, services=[
        ServiceHealth(service=n, registered=n in registered, **summary(seen.get((n,)), seconds)) for n in names])


@router.get("/{service}/instances", response_model=Instances, summary="A service's instances with their health")
def list_instances(service: ServiceName, _: Reader, store: StoreDep, window_s: WindowS = 300,
                   side: SideQ = "server") -> Instances:
    seen, seconds = _recent(store, window_s, side, ("instance",), service)
    versions, _ = _recent(store, window_s, side, ("instance", "version"), service)
    busiest: dict[str, str] = {}  # an instance mid-upgrade reports two versions: show the busier one
    for instance, version in sorted(versions, key=lambda key: versions[key]["calls"]):
        busiest[instance] = version
    registry = {r["instance"]: r for r in reg.instances(store, service)}
    rows = [InstanceHealth(instance=i, registered=i in registry,
                           version=busiest.get(i) or registry.get(i, {}).get("version", ""),
                           **summary(seen.get((i,)), seconds))
            for i in sorted(registry.keys() | {key[0] for key in seen})]
    return Instances(service=service, window_s=window_s, instances=rows)


@router.get("/{service}/interfaces", response_model=Interfaces, summary="A service's interfaces with their health")
def list_interfaces(service: ServiceName, _: Reader, store: StoreDep, window_s: WindowS = 300,
                    side: SideQ = "server") -> Interfaces:
    seen, seconds = _recent(store, window_s, side, ("interface",), service)
    return Interfaces(service=service, window_s=window_s, interfaces=[
        InterfaceHealth(interface=key[0], **summary(row, seconds)) for key, row in sorted(seen.items())])
