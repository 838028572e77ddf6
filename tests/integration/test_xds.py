"""Envoy EDS from the real API (ClickHouse 18.16, a weigh worker on the real broker): REST xDS v3 answers
and the EDS file, parsed into Envoy's own protobuf messages (xds-protos) and checked against the
validation rules Envoy applies on load. No Envoy binary can be installed here; these are the xDS
protocol rules testable without one.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from envoy.config.core.v3.health_check_pb2 import HealthStatus
from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment
from envoy.service.discovery.v3.discovery_pb2 import DiscoveryRequest, DiscoveryResponse
from google.protobuf import json_format

from api.main import create_app
from balancer import envoy
from balancer.eds import CLA_TYPE
from core.settings import Settings
from pipeline.store import Store
from svcpulse.services import ClickHouseServer, Tansu
from tests.envoy_checks import parse, violations
from tests.integration.helpers import wait_for
from tests.integration.weights_helpers import auth, rpc_event, send_rpc, serve, token, weigh_worker, write_users

pytestmark = pytest.mark.services
SERVICE = "edge.api"
A, B, C, D = "10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "[2001:db8::4]:8080"


def request(version: str = "", nonce: str = "", names: tuple[str, ...] = (SERVICE,), **extra: Any) -> dict[str, Any]:
    """A DiscoveryRequest as Envoy's REST client sends it: built as the real message, then to JSON."""
    message = DiscoveryRequest(version_info=version, response_nonce=nonce, resource_names=list(names),
                               type_url=CLA_TYPE)
    message.node.id, message.node.cluster = "envoy-1", "edge"
    return {**json_format.MessageToDict(message, preserving_proto_field_name=True), **extra}


def answer(http: httpx.Client, body: dict[str, Any]) -> tuple[DiscoveryResponse, list[ClusterLoadAssignment]]:
    r = http.post("/v3/discovery:endpoints", json=body)
    assert r.status_code == 200, r.text
    response = parse(r.json(), DiscoveryResponse)
    assignments = []
    for resource in response.resources:
        cla = ClusterLoadAssignment()
        assert resource.Unpack(cla), resource.type_url
        assert violations(cla) == []
        assignments.append(cla)
    assert violations(response) == [] and response.type_url == CLA_TYPE
    return response, assignments


def endpoints(cla: ClusterLoadAssignment) -> dict[str, tuple[int, str]]:
    """{"addr:port": (load_balancing_weight, health status name)}"""
    found = {}
    for e in cla.endpoints[0].lb_endpoints:
        address = e.endpoint.address.socket_address
        found[f"{address.address}:{address.port_value}"] = (e.load_balancing_weight.value,
                                                             HealthStatus.Name(e.health_status))
    return found


def test_rest_eds_answers_follow_the_feed_and_the_xds_version_rules(
        tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer, ch_store: Store) -> None:
    settings = Settings(store_url=f"clickhouse://127.0.0.1:{clickhouse.port}/{ch_store.database}",
                        users_file=str(write_users(tmp_path / "users.json")), weights_interval_s=0.5, write_burst=100,
                        kafka_bootstrap=broker.bootstrap)
    with weigh_worker(settings, ch_store), serve(create_app(settings)) as base, \
            httpx.Client(base_url=base, headers=auth("vic"), timeout=30) as http:
        ops = {"headers": auth("olga")}
        assert http.put(f"/v1/registry/services/{SERVICE}", json={"kind": "ip", "instances": [A, B, C, D],
                                                                    "why": "edge"}, **ops).status_code == 200
        http.put(f"/v1/overrides/{SERVICE}/{B}", json={"drained": True, "why": "maintenance"}, **ops)
        http.put(f"/v1/overrides/{SERVICE}/{D}", json={"pinned_weight": 40, "why": "smaller box"}, **ops)
        now = int(time.time() * 1000)  # C fails every call while A and D succeed: the engine ejects C
        send_rpc(broker.bootstrap, [rpc_event(SERVICE, x, ok=x != C, ts_ms=now - n)
                                    for x in (A, C, D) for n in range(60)])

        def states() -> dict[str, str]:  # {} until the worker published the service's first feed
            return {r["instance"]: r["state"] for r in http.get(f"/v1/weights/{SERVICE}").json().get("instances", [])}
        # The worker joins its group first (a few seconds on Tansu; CI once needed more than 15 s under load).
        wait_for(lambda: states() == {A: "healthy", B: "drained", C: "ejected", D: "healthy"}, 60, "the feed")

        first, [cla] = answer(http, request(names=(SERVICE, "unknown.service")))
        assert cla.cluster_name == SERVICE and len(first.resources) == 1  # unknown clusters are left out
        assert endpoints(cla) == {"10.0.0.1:8080": (100, "HEALTHY"), "10.0.0.2:8080": (0, "DRAINING"),
                                  "10.0.0.3:8080": (0, "UNHEALTHY"), "2001:db8::4:8080": (40, "HEALTHY")}
        assert first.version_info and first.nonce.startswith(first.version_info)

        # ACK (Envoy sends the version it applied): unchanged, so 304 and no resource.
        ack = http.post("/v3/discovery:endpoints", json=request(first.version_info, first.nonce))
        assert ack.status_code == 304 and ack.content == b""
        # A new feed revision that changes nothing Envoy sees keeps the version: still 304.
        http.put(f"/v1/registry/services/{SERVICE}/instances/{A}", json={"version": "v2", "why": "label"}, **ops)
        wait_for(lambda: http.get(f"/v1/weights/{SERVICE}").json()["instances"][0]["version"] == "v2", 10, "v2")
        assert http.post("/v3/discovery:endpoints", json=request(first.version_info)).status_code == 304

        # A weight change: a new version, a new nonce, the new weight.
        http.put(f"/v1/overrides/{SERVICE}/{D}", json={"pinned_weight": 70, "why": "bigger box"}, **ops)
        wait_for(lambda: http.post("/v3/discovery:endpoints", json=request(first.version_info)).status_code == 200,
                 10, "a new EDS version")
        second, [cla] = answer(http, request(first.version_info, first.nonce))
        assert second.version_info != first.version_info and second.nonce != first.nonce
        assert endpoints(cla)["2001:db8::4:8080"] == (70, "HEALTHY")

        # NACK of the current version: not sent again (304); a NACK of an older one gets the current.
        nack = {"code": 3, "message": "rejected by a test"}
        refused = request(first.version_info, second.nonce, error_detail=nack)
        assert http.post("/v3/discovery:endpoints", json=refused).status_code == 304
        again, _ = answer(http, request(first.version_info, first.nonce, error_detail=nack))
        assert again.version_info == second.version_info
        metrics = http.get("/metrics").text
        assert 'svcpulse_xds_requests_total{result="nack"} 2.0' in metrics

        # proto3 JSON's camelCase names work too; bad requests get 4xx with a reason.
        camel = json_format.MessageToDict(DiscoveryRequest(resource_names=[SERVICE], type_url=CLA_TYPE))
        assert "resourceNames" in camel and answer(http, camel)[0].version_info == second.version_info
        wrong = http.post("/v3/discovery:endpoints", json=request(type_url="type.googleapis.com/x.Cluster"))
        assert wrong.status_code == 400 and "ClusterLoadAssignment" in wrong.json()["detail"]
        assert http.post("/v3/discovery:endpoints", json=request(names=())).status_code == 400
        assert httpx.post(f"{base}/v3/discovery:endpoints", json=request()).status_code == 401  # no token

        # `svcpulse balancer envoy-eds --file`: the same assignment, as a file Envoy's path_config_source reads.
        eds_file = tmp_path / "eds" / f"{SERVICE}.json"
        args = argparse.Namespace(api=base, service=SERVICE, token=token("vic"), file=str(eds_file), cluster=None,
                                  once=True)
        assert envoy.run(args) == 0
        from_file = parse(json.loads(eds_file.read_text()), DiscoveryResponse)
        [resource] = from_file.resources
        cla = ClusterLoadAssignment()
        assert resource.Unpack(cla) and violations(cla) == [] and violations(from_file) == []
        assert endpoints(cla) == endpoints(answer(http, request())[1][0])
        assert from_file.version_info == second.version_info  # one mapping, one version, file or REST


def test_xds_open_serves_envoy_without_a_token(tmp_path: Path, broker: Tansu, clickhouse: ClickHouseServer,
                                                ch_store: Store) -> None:
    settings = Settings(store_url=f"clickhouse://127.0.0.1:{clickhouse.port}/{ch_store.database}",
                        users_file=str(write_users(tmp_path / "users.json")), weights_interval_s=0.5, xds_open=True,
                        kafka_bootstrap=broker.bootstrap)
    with weigh_worker(settings, ch_store), serve(create_app(settings)) as base:
        r = httpx.put(f"{base}/v1/registry/services/{SERVICE}", headers=auth("olga"),
                      json={"kind": "ip", "instances": [A], "why": "edge"})
        assert r.status_code == 200
        wait_for(lambda: httpx.post(f"{base}/v3/discovery:endpoints", json=request()).status_code == 200, 10,
                 "EDS without a token")
        assert httpx.get(f"{base}/v1/weights/{SERVICE}").status_code == 401  # only EDS is open
