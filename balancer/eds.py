"""The weight feed as Envoy EDS resources: xDS v3 ClusterLoadAssignment and DiscoveryResponse (pure).

Used by the API's REST endpoint (api/routes/xds.py) and by `svcpulse balancer envoy-eds --file`
(balancer/envoy.py). Dicts in proto3 JSON form (snake_case names, which Envoy and protobuf's
json_format both accept); tests parse every one into the real messages from `xds-protos`.

Mapping (docs/envoy.md):
- weight N > 0, routable        -> HEALTHY, load_balancing_weight N (Envoy requires >= 1)
- state ejected                 -> UNHEALTHY: no traffic, unless Envoy's panic threshold is reached
- state drained, or weight 0    -> DRAINING: no new requests
An instance that is not an IP address and port is left out (EDS endpoints must be addresses; Envoy
resolves names only in DNS clusters): `skipped` lists it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from balancer.adapter import is_ip, split_address

CLA_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
MAX_WEIGHT = 1_000_000  # keeps a locality's weight sum far below Envoy's uint32 limit


@dataclass(frozen=True)
class Assignment:
    resource: dict[str, Any]  # a ClusterLoadAssignment
    skipped: tuple[str, ...]  # instances that are not IP:port


def health_of(weight: int, state: str) -> str:
    if state == "ejected":
        return "UNHEALTHY"
    if state == "drained" or weight <= 0:
        return "DRAINING"
    return "HEALTHY"


def cluster_load_assignment(cluster: str, instances: Sequence[Mapping[str, Any]]) -> Assignment:
    """One ClusterLoadAssignment from feed rows ({instance, weight, state, ...}), endpoints by name."""
    endpoints, skipped = [], []
    for row in sorted(instances, key=lambda r: str(r["instance"])):
        try:
            host, port = split_address(str(row["instance"]))
        except ValueError:
            host, port = "", 0
        if not is_ip(host):
            skipped.append(str(row["instance"]))
            continue
        weight, status = int(row["weight"]), health_of(int(row["weight"]), str(row.get("state", "")))
        endpoint: dict[str, Any] = {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}},
                                    "health_status": status}
        if status == "HEALTHY":
            endpoint["load_balancing_weight"] = min(weight, MAX_WEIGHT)
        endpoints.append(endpoint)
    resource = {"@type": CLA_TYPE, "cluster_name": cluster, "endpoints": [{"lb_endpoints": endpoints}]}
    return Assignment(resource, tuple(skipped))


def version_of(resources: Iterable[Mapping[str, Any]]) -> str:
    """A content hash: the same endpoints, weights and health give the same version, so a new feed
    revision that changes nothing Envoy sees (statistics, reasons) does not make Envoy update."""
    payload = json.dumps(list(resources), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def discovery_response(resources: Sequence[Mapping[str, Any]], version: str, nonce: str = "") -> dict[str, Any]:
    response: dict[str, Any] = {"version_info": version, "resources": list(resources), "type_url": CLA_TYPE}
    if nonce:
        response["nonce"] = nonce
    return response
