"""Services with a health summary, and the instances and interfaces of one service.

Health is read from the per-minute rollup over the last `window_s` (default 5 min, whole minutes,
the current minute included); rps divides by the seconds actually covered so far. Each service and
instance says whether it is routable (weights/admission.py): observed-but-unregistered instances are
listed as "observed, not routable" with the reason. Instances and interfaces of one service are
listed up to the cardinality caps (busiest first); `omitted` counts the rest.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.auth import Reader
from api.deps import SettingsDep, StoreDep
from api.queries import discovery as dq
from api.queries import registry as reg
from api.queries.timeseries import Selector, Side, rpc_aggregates
from api.routes.params import SideQ, WindowS
from api.routes.weights import ServiceName
from api.series import summary
from api.timerange import Window, last_minutes
from weights.admission import authority, is_registration, judge

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
    routable: bool = Field(description="has a weight feed: registered, or a discovery policy is on")


class InstanceHealth(Health):
    instance: str = Field(examples=["10.0.0.7:8080"])
    version: str = Field(description="the newest version label seen (or registered)", examples=["v2"])
    registered: bool
    routable: bool = Field(description="may be in the weight feed (registered or admitted by the discovery policy)")
    admission: str = Field(description='"registered", "admitted by the discovery policy", or why it is '
                           '"observed, not routable"', examples=["registered"])


class InterfaceHealth(Health):
    interface: str = Field(examples=["GET /cart/{id}"])


class Services(BaseModel):
    window_s: int
    services: list[ServiceHealth]
    omitted: int = Field(0, description="services only seen in calls past the services-per-hour cap, not listed")


class Instances(BaseModel):
    service: str
    window_s: int
    instances: list[InstanceHealth]
    omitted: int = Field(0, description="instances past the instances-per-service cap, not listed")


class Interfaces(BaseModel):
    service: str
    window_s: int
    interfaces: list[InterfaceHealth]
    omitted: int = Field(0, description="interfaces past the interfaces-per-service cap, not listed")


def _recent(store: StoreDep, window_s: int, side: Side, by: tuple[str, ...],
            service: str | None = None) -> tuple[dict[tuple[str, ...], dict[str, Any]], float]:
    """Rows keyed by their `by` values, and the seconds the window covers so far."""
    now_ms = int(time.time() * 1000)
    window: Window = last_minutes(now_ms, window_s)
    rows = rpc_aggregates(store, Selector.of(side, service=service), by, window, bucketed=False)
    return {tuple(r[d] for d in by): r for r in rows}, max(now_ms / 1000 - window.from_s, 1.0)


@router.get("", response_model=Services, summary="Services (registered or seen) with rps, success and p99")
def list_services(_: Reader, store: StoreDep, settings: SettingsDep, window_s: WindowS = 300,
                  side: SideQ = "server") -> Services:
    seen, seconds = _recent(store, window_s, side, ("service",))
    registry = reg.services(store)
    made = authority(reg.instances(store), registry, dq.policies(store))
    registered = {s["service"] for s in registry if is_registration(s)}
    observed = sorted((key[0] for key in seen if key[0] and key[0] not in made.operator_made),
                      key=lambda n: -seen[(n,)]["calls"])  # only seen in calls: the busiest, up to the cap
    shown = observed[:settings.cap_services_per_hour]
    return Services(window_s=window_s, omitted=len(observed) - len(shown), services=[
        ServiceHealth(service=n, registered=n in registered, routable=n in made.operator_made,
                      **summary(seen.get((n,)), seconds)) for n in sorted({*registered, *made.operator_made, *shown})])


@router.get("/{service}/instances", response_model=Instances, summary="A service's instances with their health "
            "and whether each is routable")
def list_instances(service: ServiceName, _: Reader, store: StoreDep, settings: SettingsDep, window_s: WindowS = 300,
                   side: SideQ = "server") -> Instances:
    seen, seconds = _recent(store, window_s, side, ("instance",), service)
    versions, _ = _recent(store, window_s, side, ("instance", "version"), service)
    busiest: dict[str, str] = {}  # an instance mid-upgrade reports two versions: show the busier one
    for instance, version in sorted(versions, key=lambda key: versions[key]["calls"]):
        busiest[instance] = version
    sides = dq.observed_sides(store, service, last_minutes(int(time.time() * 1000), window_s).from_s)
    registry = {r["instance"]: r for r in reg.instances(store, service)}
    policy = dq.policies(store).get(service)
    names = sorted(registry.keys() | sides.keys() | {key[0] for key in seen},
                   key=lambda i: (i not in registry, -seen.get((i,), {"calls": 0})["calls"], i))
    cap = settings.cap_instances_per_service
    rows = []
    for i in sorted(names[:cap]):
        verdict = judge(i, "server" in sides.get(i, ()), registry.get(i), policy)
        rows.append(InstanceHealth(instance=i, registered=i in registry and is_registration(registry[i]),
                                   routable=verdict.routable,
                                   admission=verdict.reason,
                                   version=busiest.get(i) or registry.get(i, {}).get("version", ""),
                                   **summary(seen.get((i,)), seconds)))
    return Instances(service=service, window_s=window_s, instances=rows, omitted=max(0, len(names) - cap))


@router.get("/{service}/interfaces", response_model=Interfaces, summary="A service's interfaces with their health")
def list_interfaces(service: ServiceName, _: Reader, store: StoreDep, settings: SettingsDep,
                    window_s: WindowS = 300, side: SideQ = "server") -> Interfaces:
    seen, seconds = _recent(store, window_s, side, ("interface",), service)
    cap = settings.cap_interfaces_per_service
    busiest = sorted(seen.items(), key=lambda item: -item[1]["calls"])[:cap]
    return Interfaces(service=service, window_s=window_s, omitted=max(0, len(seen) - cap), interfaces=[
        InterfaceHealth(interface=key[0], **summary(row, seconds)) for key, row in sorted(busiest)])
