"""The weight feed (DESIGN.md, "Weight feed"): per service and for all services, ETag + long-poll."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Path, Query, Response

from api.auth import Reader
from api.deps import StoreDep, WeightsDep
from api.queries import weights as wq
from api.weights.service import WeightService

router = APIRouter(prefix="/v1/weights", tags=["weights"])

SERVICE_NAME = r"^[A-Za-z0-9_.\-]{1,128}$"
ServiceName = Annotated[str, Path(pattern=SERVICE_NAME, description="service name, e.g. shop.cart")]
WaitS = Annotated[float, Query(ge=0, le=60, description="long-poll: hold up to N s until the revision "
                                                        "differs from If-None-Match")]
IfNoneMatch = Annotated[str | None, Header(description='"<revision>" from an earlier ETag')]
_FEED_RESPONSES: dict[int | str, dict[str, Any]] = {
    304: {"description": "unchanged since If-None-Match"},
    404: {"description": "unknown service"},
    503: {"description": "the feed is not loaded yet (this replica is reading svcpulse.weights)"},
}


def _etag_revision(header: str | None) -> str:
    return (header or "").strip().removeprefix("W/").strip('"')


async def _serve(weights: WeightService, service: str | None, wait_s: float, if_none_match: str | None) -> Response:
    """200 with the feed and its ETag, or 304 when If-None-Match still names the current revision."""
    if not weights.ready:
        why = f" ({weights.last_error})" if weights.last_error else ""
        raise HTTPException(503, f"weight feed not loaded yet: reading svcpulse.weights{why}")
    if service is not None and service not in weights.feeds:
        raise HTTPException(404, f"unknown service {service!r}: not registered, and no instance admitted by a "
                            "discovery policy (GET /v1/services/{service}/instances says why)")
    seen = _etag_revision(if_none_match)
    if seen and seen == weights.revision(service) and wait_s > 0:
        await weights.wait_change(service, seen, wait_s)
    revision = weights.revision(service)
    if revision is None:  # the service disappeared while we waited
        raise HTTPException(404, f"unknown service {service!r}: no longer registered or admitted")
    headers = {"ETag": f'"{revision}"', "Cache-Control": "no-cache"}
    if seen == revision:
        return Response(status_code=304, headers=headers)
    return Response(weights.body(service), media_type="application/json", headers=headers)


@router.get("", summary="Weights of every service", responses=_FEED_RESPONSES)
async def all_weights(_: Reader, weights: WeightsDep, wait_s: WaitS = 0,
                      if_none_match: IfNoneMatch = None) -> Response:
    return await _serve(weights, None, wait_s, if_none_match)


@router.get("/{service}", summary="One service's weight feed", responses=_FEED_RESPONSES)
async def service_weights(service: ServiceName, _: Reader, weights: WeightsDep, wait_s: WaitS = 0,
                          if_none_match: IfNoneMatch = None) -> Response:
    return await _serve(weights, service, wait_s, if_none_match)


@router.get("/{service}/history", summary="Published weights over time (from weight_history)")
def weight_history(service: ServiceName, _: Reader, store: StoreDep,
                   minutes: Annotated[int, Query(ge=1, le=1440)] = 15,
                   limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> list[dict[str, Any]]:
    since_ms = int(time.time() * 1000) - minutes * 60_000
    return wq.weight_history(store, service, since_ms, limit)
