"""The audit log: every change through the API, with who, which role and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.auth import Principal, Reader
from api.deps import StoreDep
from api.queries import registry as reg
from api.weights.service import WeightService
from pipeline.store import Store

router = APIRouter(prefix="/v1/audit", tags=["audit"])

_WHY = "why the change is made; kept in the audit log"
WhyQuery = Annotated[str, Query(min_length=1, max_length=500, description=_WHY)]


class Change(BaseModel):
    """Every write body says why."""

    why: str = Field(min_length=1, max_length=500, description=_WHY)


def record(store: Store, weights: WeightService, who: Principal, action: str, service: str, target: str,
           detail: Mapping[str, Any], why: str) -> None:
    """Write the audit row for a change already stored, then publish its effect at once."""
    reg.record_audit(store, user=who.name, role=who.role, action=action, service=service, target=target,
                     detail=detail, why=why)
    weights.kick()


@router.get("", summary="Recent changes, newest first")
def audit_log(_: Reader, store: StoreDep, service: Annotated[str | None, Query(max_length=128)] = None,
              limit: Annotated[int, Query(ge=1, le=10_000)] = 100) -> list[dict[str, Any]]:
    return reg.audit(store, service, limit)
