"""The registry: services and their instances, as operators and automation register them.

The registry is what makes an instance routable (with discovery policies, api/routes/discovery.py);
telemetry never writes here. A service with kind "ip" is MSEC's heterogeneous service: only IP:port
instances, no telemetry needed. Static weight, version and enabled/disabled per instance feed the
weight engine. Entries with names that break the grammar (written by older versions' discovery) can
be changed and deleted by their exact name (api/names.py), also through the `?service=` forms.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import Field, field_validator

from api.auth import Admin, Operator, Reader
from api.deps import StoreDep, WeightsDep
from api.names import StoredName, stored_instance
from api.queries import registry as reg
from api.routes.audit import Change, WhyQuery, record
from api.routes.weights import ServiceName
from pipeline.store import Store
from weights.inputs import normalize_instance
from weights.model import STATIC_WEIGHT

router = APIRouter(prefix="/v1/registry", tags=["registry"])

StaticWeight = Annotated[int, Field(ge=0, le=10_000, description="the instance's full weight (MSEC: 100)")]


class ServiceIn(Change):
    kind: Literal["rpc", "ip"] = Field("rpc", description='"ip" = IP:port only (heterogeneous service)')
    description: str = Field("", max_length=500)
    instances: list[str] = Field([], max_length=1000, description="host:port list registered with the service "
                                 "(weight 100, enabled); one call, so they start together without slow start")
    signal: Literal["rpc", "tcp", "auto"] = Field("auto", description="what judges its instances: rpc calls, "
                                                  "callers' TCP connections, or auto (calls where there are any, "
                                                  "else connections; connections may only lower)")

    @field_validator("instances")
    @classmethod
    def _instances(cls, values: list[str]) -> list[str]:
        return [normalize_instance(v) for v in values]


class InstanceIn(Change):
    instance: str = Field(description="host:port", examples=["10.0.0.7:8080"])
    static_weight: StaticWeight = 100
    version: str = Field("", max_length=128)
    enabled: bool = True

    @field_validator("instance")
    @classmethod
    def _instance(cls, value: str) -> str:
        return normalize_instance(value)


class InstancePatch(Change):
    static_weight: StaticWeight | None = None
    version: str | None = Field(None, max_length=128)
    enabled: bool | None = None


def _stamp(who: str) -> dict[str, Any]:
    return {"deleted": 0, "changed_ms": reg.stamp_ms(), "changed_by": who}


@router.get("/services", summary="Services with their instances")
def list_services(_: Reader, store: StoreDep) -> list[dict[str, Any]]:
    instances = reg.instances(store)
    return [{**s, "instances": [i for i in instances if i["service"] == s["service"]]} for s in reg.services(store)]


@router.put("/services/{service}", summary="Register or update a service (operator)")
def put_service(service: ServiceName, body: ServiceIn, who: Operator, store: StoreDep,
                weights: WeightsDep) -> dict[str, Any]:
    row = {"service": service, "kind": body.kind, "description": body.description, "signal": body.signal,
           "source": "api", **_stamp(who.name)}
    reg.write_services(store, [row])
    reg.write_instances(store, [{"service": service, "instance": i, "static_weight": STATIC_WEIGHT, "version": "",
                                 "enabled": 1, "source": "api", **_stamp(who.name)} for i in body.instances])
    record(store, weights, who, "service.put", service, service, body.model_dump(exclude={"why"}), body.why)
    return {**row, "instances": body.instances}


@router.delete("/services/{service}", summary="Remove a service and its instances from the registry (admin)")
@router.delete("/services", summary="Remove a service by its exact name, any characters (admin)")
def delete_service(service: StoredName, why: WhyQuery, who: Admin, store: StoreDep,
                   weights: WeightsDep) -> dict[str, Any]:
    known = {s["service"] for s in reg.services(store)} | {i["service"] for i in reg.instances(store, service)}
    if service not in known:
        raise HTTPException(404, f"service {service!r} is not in the registry")
    gone = [{**i, **_stamp(who.name), "deleted": 1} for i in reg.instances(store, service)]
    reg.write_instances(store, gone)
    reg.write_services(store, [{"service": service, "kind": "", "description": "", "source": "api",
                                **_stamp(who.name), "deleted": 1}])
    record(store, weights, who, "service.delete", service, service, {"instances": len(gone)}, why)
    return {"service": service, "deleted": True, "instances": len(gone)}


@router.post("/services/{service}/instances", status_code=201, summary="Register an instance (operator)")
def add_instance(service: ServiceName, body: InstanceIn, who: Operator, store: StoreDep,
                 weights: WeightsDep) -> dict[str, Any]:
    if service not in {s["service"] for s in reg.services(store)}:
        reg.write_services(store, [{"service": service, "kind": "rpc", "description": "", "source": "api",
                                    **_stamp(who.name)}])
    row = {"service": service, "instance": body.instance, "static_weight": body.static_weight,
           "version": body.version, "enabled": int(body.enabled), "source": "api", **_stamp(who.name)}
    reg.write_instances(store, [row])
    record(store, weights, who, "instance.add", service, body.instance,
           body.model_dump(exclude={"why", "instance"}), body.why)
    return row


@router.put("/services/{service}/instances/{instance:path}", summary="Change an instance (operator)")
def update_instance(service: StoredName, instance: StoredName, body: InstancePatch, who: Operator,
                    store: StoreDep, weights: WeightsDep) -> dict[str, Any]:
    current = _existing(store, service, instance)
    changes = body.model_dump(exclude={"why"}, exclude_none=True)
    if not changes:
        raise HTTPException(422, "nothing to change: give static_weight, version and/or enabled")
    row = {**current, **changes, "enabled": int(changes.get("enabled", current["enabled"])), **_stamp(who.name)}
    reg.write_instances(store, [row])
    record(store, weights, who, "instance.update", service, current["instance"], changes, body.why)
    return row


@router.delete("/services/{service}/instances/{instance:path}", summary="Deregister an instance (operator)")
@router.delete("/instances", summary="Deregister an instance by its exact name, any characters (operator)")
def delete_instance(service: StoredName, instance: StoredName, why: WhyQuery, who: Operator, store: StoreDep,
                    weights: WeightsDep) -> dict[str, Any]:
    current = _existing(store, service, instance)
    reg.write_instances(store, [{**current, **_stamp(who.name), "deleted": 1}])
    record(store, weights, who, "instance.delete", service, current["instance"], {}, why)
    return {"service": service, "instance": current["instance"], "deleted": True}


def _existing(store: Store, service: str, instance: str) -> dict[str, Any]:
    """The live registry row of this exact name, else of its normalised host:port; 404 if neither."""
    rows = {row["instance"]: row for row in reg.instances(store, service)}
    found = rows.get(instance) or rows.get(stored_instance(store, service, instance))
    if found is None:
        raise HTTPException(404, f"instance {instance!r} of {service!r} is not in the registry")
    return found
