"""Operator overrides per instance: drain it (weight 0) or pin its weight; they win over the data.

`/{service}/{instance}` addresses an instance by path; `?service=&instance=` by exact name, for
names a path cannot carry (api/names.py): every stored name can be drained, pinned and unpinned.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import Field, model_validator

from api.auth import Operator, Reader
from api.deps import StoreDep, WeightsDep
from api.names import StoredName, stored_instance, stored_service
from api.queries import registry as reg
from api.routes.audit import Change, WhyQuery, record

router = APIRouter(prefix="/v1/overrides", tags=["overrides"])
NOT_PINNED = -1  # stored in pinned_weight (Int32) when the weight is not pinned


class OverrideIn(Change):
    drained: bool = Field(False, description="send this instance nothing (weight 0, state drained)")
    pinned_weight: int | None = Field(None, ge=0, le=10_000, description="publish exactly this weight")

    @model_validator(mode="after")
    def _something(self) -> OverrideIn:
        if not self.drained and self.pinned_weight is None:
            raise ValueError("give drained: true or a pinned_weight (DELETE removes an override)")
        return self


@router.get("", summary="Overrides in force")
def list_overrides(_: Reader, store: StoreDep, service: str | None = None) -> list[dict[str, Any]]:
    return reg.overrides(store, service)


@router.put("/{service}/{instance:path}", summary="Drain an instance or pin its weight (operator)")
@router.put("", summary="Drain or pin an instance by its exact name, any characters (operator)")
def put_override(service: StoredName, instance: StoredName, body: OverrideIn, who: Operator, store: StoreDep,
                 weights: WeightsDep) -> dict[str, Any]:
    service = stored_service(store, service)
    instance = stored_instance(store, service, instance)
    pinned = NOT_PINNED if body.pinned_weight is None else body.pinned_weight
    row = {"service": service, "instance": instance, "drained": int(body.drained), "pinned_weight": pinned,
           "deleted": 0, "changed_ms": reg.stamp_ms(), "changed_by": who.name, "why": body.why}
    reg.write_override(store, row)
    action = "override.drain" if body.drained else "override.pin"
    record(store, weights, who, action, service, instance, body.model_dump(exclude={"why"}), body.why)
    return row


@router.delete("/{service}/{instance:path}", summary="Remove an override; the data decides again (operator)")
@router.delete("", summary="Remove an override by the instance's exact name, any characters (operator)")
def delete_override(service: StoredName, instance: StoredName, why: WhyQuery, who: Operator, store: StoreDep,
                    weights: WeightsDep) -> dict[str, Any]:
    current = [o for o in reg.overrides(store, service) if o["instance"] == instance]
    if not current:  # the exact name first: a stored name need not be a normalised host:port
        instance = stored_instance(store, service, instance)
        current = [o for o in reg.overrides(store, service) if o["instance"] == instance]
    if not current:
        raise HTTPException(404, f"no override on {instance!r} of {service!r}")
    reg.write_override(store, {**current[0], "deleted": 1, "changed_ms": reg.stamp_ms(), "changed_by": who.name,
                               "why": why})
    record(store, weights, who, "override.delete", service, instance, {}, why)
    return {"service": service, "instance": instance, "deleted": True}
