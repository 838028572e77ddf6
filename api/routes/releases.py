"""Gray release: instances of a canary version get X% of a service's traffic, guarded.

The weight loop aborts an active release by itself (back to 0%, state "aborted", audited as user
"svcpulse") when the canary's error rate or p99 is worse than the rest by the configured margin.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import Field

from api.auth import Operator, Reader
from api.deps import SettingsDep, StoreDep, WeightsDep
from api.queries import registry as reg
from api.routes.audit import Change, WhyQuery, record
from api.routes.weights import ServiceName

router = APIRouter(prefix="/v1/releases", tags=["releases"])


class ReleaseIn(Change):
    canary_version: str = Field(min_length=1, max_length=128, description="the version label of canary instances")
    percent: float = Field(ge=0, le=100, description="share of the service's traffic for the canary")
    error_margin: float | None = Field(None, ge=0, le=1, description="abort when canary errors exceed the "
                                       "baseline's by this (absolute); default from settings")
    p99_margin: float | None = Field(None, ge=0, description="abort when canary p99 exceeds the baseline's by "
                                     "this fraction; default from settings")


@router.get("", summary="Releases (active, aborted, ended), one per service")
def list_releases(_: Reader, store: StoreDep) -> list[dict[str, Any]]:
    return reg.releases(store)


@router.get("/{service}", summary="A service's release")
def get_release(service: ServiceName, _: Reader, store: StoreDep) -> dict[str, Any]:
    found = reg.releases(store, service)
    if not found:
        raise HTTPException(404, f"no release for {service!r}")
    return found[0]


@router.put("/{service}", summary="Start a gray release or change its percent (operator)")
def put_release(service: ServiceName, body: ReleaseIn, who: Operator, store: StoreDep, weights: WeightsDep,
                settings: SettingsDep) -> dict[str, Any]:
    versions = {i["version"] for i in reg.instances(store, service)}
    versions |= {r["version"] for r in weights.feeds.get(service, {}).get("instances", [])}
    if body.canary_version not in versions:
        raise HTTPException(422, f"no instance of {service!r} has version {body.canary_version!r}; "
                                 f"known versions: {sorted(v for v in versions if v)}")
    row = {"service": service, "canary_version": body.canary_version, "percent": body.percent,
           "state": "active", "reason": body.why,
           "error_margin": settings.canary_error_margin if body.error_margin is None else body.error_margin,
           "p99_margin": settings.canary_p99_margin if body.p99_margin is None else body.p99_margin,
           "changed_ms": reg.stamp_ms(), "changed_by": who.name}
    reg.write_release(store, row)
    record(store, weights, who, "release.put", service, body.canary_version, body.model_dump(exclude={"why"}),
           body.why)
    return row


@router.delete("/{service}", summary="End a release: the engine's weights apply again (operator)")
def end_release(service: ServiceName, why: WhyQuery, who: Operator, store: StoreDep,
                weights: WeightsDep) -> dict[str, Any]:
    found = reg.releases(store, service)
    if not found or found[0]["state"] == "ended":
        raise HTTPException(404, f"no release in force for {service!r}")
    row = {**found[0], "state": "ended", "reason": why, "changed_ms": reg.stamp_ms(), "changed_by": who.name}
    reg.write_release(store, row)
    record(store, weights, who, "release.end", service, found[0]["canary_version"], {}, why)
    return row
