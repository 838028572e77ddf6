"""Envoy's Endpoint Discovery Service over REST-JSON xDS v3: POST /v3/discovery:endpoints (docs/envoy.md).

Envoy polls it (`api_type: REST`, every refresh_delay) with a DiscoveryRequest naming its clusters;
each name is a svcpulse service. The answer is built from exactly what GET /v1/weights/{service}
serves, mapped by balancer/eds.py. Protocol rules:
- version_info is a hash of the resources sent, so it changes only when something Envoy acts on does;
- a request whose version_info is the current version (Envoy's ACK, or a poll with nothing new) gets
  304 Not Modified and no body, which Envoy's REST subscription treats as "unchanged";
- a NACK (error_detail set; response_nonce names the rejected response, "<version>-<n>") is counted
  and logged; if that version is still current, 304 again instead of resending what was refused;
- every 200 carries a fresh nonce; unknown cluster names are left out of the answer, as xDS allows.
Envoy's REST client sends no Authorization header: SVCPULSE_XDS_OPEN=true serves this endpoint
without a token (the same weights the feed serves), otherwise a viewer token is required.
"""

from __future__ import annotations

import functools
import itertools
import logging
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from prometheus_client import Counter
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from api.auth import Principal, reader
from api.deps import WeightsDep
from balancer.eds import CLA_TYPE, Assignment, cluster_load_assignment, discovery_response, version_of

router = APIRouter(tags=["xds"])
log = logging.getLogger("svcpulse.xds")
# In no global registry: the API's own /metrics registry serves it (api/metrics.py).
REQUESTS = Counter("svcpulse_xds_requests", "REST xDS requests by outcome: sent (200), unchanged (304), "
                   "nack (Envoy refused a response), bad (4xx)", ["result"], registry=None)
_nonces = itertools.count(1)


def _field(name: str, camel: str, default: Any) -> Any:
    return Field(default, validation_alias=AliasChoices(name, camel))  # proto3 JSON allows both spellings


class DiscoveryRequest(BaseModel):
    """envoy.service.discovery.v3.DiscoveryRequest; fields svcpulse does not use are ignored."""

    model_config = ConfigDict(extra="ignore")
    version_info: str = _field("version_info", "versionInfo", "")
    node: dict[str, Any] = Field(default_factory=dict)
    resource_names: list[str] = _field("resource_names", "resourceNames", [])
    type_url: str = _field("type_url", "typeUrl", "")
    response_nonce: str = _field("response_nonce", "responseNonce", "")
    error_detail: dict[str, Any] | None = _field("error_detail", "errorDetail", None)


async def xds_reader(request: Request) -> Principal:
    if request.app.state.settings.xds_open:
        return Principal("envoy", "viewer")
    return await reader(request)


@functools.lru_cache(maxsize=1024)
def _assignment(service: str, body: bytes) -> Assignment:
    return cluster_load_assignment(service, orjson.loads(body)["instances"])


@router.post("/v3/discovery:endpoints", summary="Envoy EDS over REST-JSON xDS v3",
             responses={304: {"description": "the requested version is current (or was just refused)"}})
async def endpoints(request: Request, body: DiscoveryRequest, weights: WeightsDep,
                    _: Annotated[Principal, Depends(xds_reader)]) -> Response:
    if body.type_url not in ("", CLA_TYPE):
        REQUESTS.labels("bad").inc()
        raise HTTPException(400, f"this endpoint serves {CLA_TYPE}, not {body.type_url!r}")
    if not body.resource_names:
        REQUESTS.labels("bad").inc()
        raise HTTPException(400, "resource_names is empty: EDS names the clusters (svcpulse services) it wants")
    if not weights.ready:
        raise HTTPException(503, "weights not computed yet: the first cycle is pending")
    resources = []
    for service in sorted(set(body.resource_names)):
        if weights.revision(service) is not None:
            resources.append(_assignment(service, weights.body(service)).resource)
    version = version_of(resources)
    if body.error_detail is not None:
        REQUESTS.labels("nack").inc()
        node = body.node.get("id", "?")
        log.warning("Envoy %s refused EDS response %s: %s", node, body.response_nonce,
                    body.error_detail.get("message", body.error_detail))
        if body.response_nonce.rsplit("-", 1)[0] == version:
            return _unchanged()
    elif body.version_info == version:
        return _unchanged()
    REQUESTS.labels("sent").inc()
    answer = discovery_response(resources, version, f"{version}-{next(_nonces)}")
    return Response(orjson.dumps(answer), media_type="application/json")


def _unchanged() -> Response:
    REQUESTS.labels("unchanged").inc()
    return Response(status_code=304)
