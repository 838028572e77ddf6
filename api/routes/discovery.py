"""Discovery policies: the only way telemetry may add instances to a service's feed (admin).

Without a policy, an instance seen in calls is "observed, not routable" until an operator registers
it. A policy admits observed instances whose IP is inside one of its CIDRs, whose port is listed
(none = any) and, by default, that reported themselves (server-side events). See weights/admission.py
and docs/security.md ("Discovery model").
"""

from __future__ import annotations

import ipaddress
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import Field, field_validator

from api.auth import Admin, Reader
from api.deps import StoreDep, WeightsDep
from api.queries import discovery as dq
from api.routes.audit import Change, WhyQuery, record
from api.routes.weights import ServiceName

router = APIRouter(prefix="/v1/discovery", tags=["registry"])


class PolicyIn(Change):
    cidrs: list[str] = Field(min_length=1, max_length=64, description="address ranges whose instances may be "
                             "admitted, e.g. 10.20.0.0/16 or fd00::/8", examples=[["10.20.0.0/16"]])
    ports: list[int] = Field([], max_length=64, description="ports admitted (empty: any port)", examples=[[8080]])
    server_side_only: bool = Field(True, description="admit only instances that reported themselves (server-side "
                                   "events); false also trusts what clients claim they called")

    @field_validator("cidrs")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        clean = []
        for value in values:
            try:
                clean.append(str(ipaddress.ip_network(value.strip(), strict=False)))
            except ValueError as err:
                raise ValueError(f"cidr {value!r}: expected an address range such as 10.20.0.0/16") from err
        return sorted(set(clean))

    @field_validator("ports")
    @classmethod
    def _ports(cls, values: list[int]) -> list[int]:
        if any(not 0 < port < 65536 for port in values):
            raise ValueError("ports must be 1..65535")
        return sorted(set(values))


@router.get("", summary="Discovery policies in force")
def list_policies(_: Reader, store: StoreDep) -> list[dict[str, Any]]:
    return dq.policy_rows(store)


@router.put("/{service}", summary="Let telemetry add instances in these ranges to the feed (admin)")
def put_policy(service: ServiceName, body: PolicyIn, who: Admin, store: StoreDep,
               weights: WeightsDep) -> dict[str, Any]:
    row = dq.write_policy(store, service, body.cidrs, body.ports, body.server_side_only, changed_by=who.name,
                          why=body.why)
    record(store, weights, who, "discovery.put", service, service, body.model_dump(exclude={"why"}), body.why)
    return row


@router.delete("/{service}", summary="Stop admitting observed instances; registered ones stay (admin)")
def delete_policy(service: ServiceName, why: WhyQuery, who: Admin, store: StoreDep,
                  weights: WeightsDep) -> dict[str, Any]:
    current = dq.policy_rows(store, service)
    if not current:
        raise HTTPException(404, f"no discovery policy for {service!r}")
    dq.write_policy(store, service, current[0]["cidrs"], current[0]["ports"], bool(current[0]["server_side_only"]),
                    changed_by=who.name, why=why, deleted=True)
    record(store, weights, who, "discovery.delete", service, service, {}, why)
    return {"service": service, "deleted": True}
