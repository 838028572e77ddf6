"""The pure span -> rpc event mapping, row by row of the table in docs/otlp.md (current and older
semantic-convention names), plus what is skipped and what is rejected and why."""

from __future__ import annotations

import time
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlp import mapping, projection
from otlp.mapping import Limits, Mapped
from pipeline.events import validate
from tests.otlp import spans as span_builders
from tests.otlp.spans import request, resource_spans, span

NOW_MS = time.time_ns() // 1_000_000  # fixed at collection: parameters below are relative to it


@pytest.fixture(autouse=True)
def spans_start_at_now_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spans without a start time start at NOW_MS, not at run time: in the whole suite these tests run
    many minutes after collection, past the mapping's 15-minute clock-skew allowance."""
    monkeypatch.setattr(span_builders, "now_ns", lambda: NOW_MS * 1_000_000)
PY_RESOURCE = {"service.name": "users", "service.version": "1.4.2", "host.name": "node-1"}


def map_request(message: ExportTraceServiceRequest, now_ms: int, limits: Limits = mapping.DEFAULT_LIMITS) -> Mapped:
    """The request as the receiver maps it: serialized, parsed into the projection, mapped."""
    return mapping.map_request(projection.parse(message.SerializeToString()), now_ms, limits)


def one(kind: str, attributes: dict[str, Any], resource: dict[str, Any] | None = None, **span_args: Any) -> dict:
    spans = [span(kind, attributes=attributes, **span_args)]
    mapped = map_request(request(resource_spans(PY_RESOURCE if resource is None else resource, spans)), NOW_MS)
    assert mapped.spans == 1 and not mapped.rejected and not mapped.skipped, mapped
    (event,) = mapped.events()
    # Every mapped event passes the contract as it is (the optional workload fields take their defaults).
    assert validate("rpc", event) == {"workload": "", "workload_kind": "", **event}
    return event


def test_a_python_server_span_with_the_older_names() -> None:
    event = one("server", {"http.method": "GET", "http.route": "/users/{uid}", "http.host": "127.0.0.1:8080",
                           "net.host.port": 8080, "http.status_code": 200, "net.peer.ip": "10.0.0.9",
                           "http.target": "/users/42", "http.url": "http://127.0.0.1:8080/users/42"},
                start_ns=NOW_MS * 1_000_000 - 5_000_000_000, duration_ms=12.345678)
    assert event == {"v": 1, "ts_ms": NOW_MS - 5000 + 12, "caller": "", "callee": "users",
                     "interface": "GET /users/{uid}", "instance": "127.0.0.1:8080", "side": "server",
                     "latency_ms": pytest.approx(12.345678, abs=1e-6), "status": "ok", "code": "200",
                     "version": "1.4.2", "host": "node-1", "cgroup": ""}


def test_a_node_server_span_with_the_current_names() -> None:
    event = one("server", {"http.request.method": "GET", "server.address": "10.0.0.5", "server.port": 3000,
                           "network.peer.address": "10.0.0.9", "client.address": "10.0.0.9", "url.path": "/work/7",
                           "http.route": "/work/:id", "http.response.status_code": 503},
                resource={"service.name": "shop.cart", "host.name": "vm"})
    assert (event["interface"], event["instance"], event["status"], event["code"]) == (
        "GET /work/:id", "10.0.0.5:3000", "error", "503")


@pytest.mark.parametrize(("code", "status"), [(200, "ok"), (404, "ok"), (400, "ok"), (429, "error"), (500, "error"),
                                              (503, "error"), (504, "timeout")])
def test_http_status_classes_as_the_interceptors_count_them(code: int, status: str) -> None:
    # OpenTelemetry marks client spans with 4xx as ERROR; svcpulse does not count a caller's mistake
    event = one("client", {"http.request.method": "POST", "server.address": "users", "server.port": 80,
                           "http.response.status_code": code}, status="error" if code >= 400 else "unset")
    assert (event["status"], event["code"]) == (status, str(code))


def test_a_client_span_names_the_callee_and_instance_it_called_and_never_the_path() -> None:
    old = one("client", {"http.method": "GET", "http.url": "http://users.prod.svc:8080/users/42?x=1",
                         "http.status_code": 404})
    assert (old["caller"], old["callee"], old["instance"], old["interface"], old["side"], old["version"]) == (
        "users", "users.prod.svc", "users.prod.svc:8080", "GET", "client", "")
    https = one("client", {"http.request.method": "GET", "url.full": "https://api.example.com/v1/orders/9"})
    assert (https["callee"], https["instance"]) == ("api.example.com", "api.example.com:443")
    named = one("client", {"http.request.method": "GET", "server.address": "10.0.0.7", "server.port": 8080,
                           "peer.service": "billing", "url.template": "/invoices/{id}"})
    assert (named["callee"], named["instance"], named["interface"]) == ("billing", "10.0.0.7:8080",
                                                                         "GET /invoices/{id}")
    older = one("client", {"http.method": "GET", "net.peer.name": "inventory", "net.peer.port": 9000})
    assert (older["callee"], older["instance"]) == ("inventory", "inventory:9000")


@pytest.mark.parametrize(("code", "status", "name"), [(0, "ok", "OK"), (5, "ok", "NOT_FOUND"),
                                                      (3, "ok", "INVALID_ARGUMENT"), (14, "error", "UNAVAILABLE"),
                                                      (13, "error", "INTERNAL"), (4, "timeout", "DEADLINE_EXCEEDED"),
                                                      ("UNAVAILABLE", "error", "UNAVAILABLE")])
def test_grpc_codes(code: int | str, status: str, name: str) -> None:
    key = "rpc.grpc.status_code" if isinstance(code, int) else "rpc.response.status_code"
    event = one("server", {"rpc.system": "grpc", "rpc.service": "users.v1.Users", "rpc.method": "GetUser",
                           key: code, "server.address": "10.0.0.5", "server.port": 50051})
    assert (event["interface"], event["status"], event["code"]) == ("/users.v1.Users/GetUser", status, name)


def test_a_fully_qualified_rpc_method_is_the_interface() -> None:
    event = one("client", {"rpc.system": "grpc", "rpc.method": "users.v1.Users/GetUser", "server.address": "users",
                           "server.port": 50051, "rpc.grpc.status_code": 0})
    assert (event["interface"], event["callee"], event["instance"]) == ("/users.v1.Users/GetUser", "users",
                                                                         "users:50051")


@pytest.mark.parametrize(("error_type", "status", "code"), [("ECONNREFUSED", "error", "ECONNREFUSED"),
                                                            ("TimeoutError", "timeout", "TimeoutError"),
                                                            ("", "error", "ERROR")])
def test_a_failed_call_without_a_protocol_code_takes_the_span_status(error_type: str, status: str, code: str) -> None:
    attributes = {"http.request.method": "GET", "server.address": "users", "server.port": 80}
    if error_type:
        attributes["error.type"] = error_type
    event = one("client", attributes, status="error")
    assert (event["status"], event["code"]) == (status, code)


def test_a_span_that_is_neither_http_nor_rpc_is_named_by_its_low_cardinality_name() -> None:
    event = one("client", {"server.address": "db-1", "server.port": 5432, "db.system": "postgresql"},
                name="SELECT shop.orders", status="ok")
    assert (event["interface"], event["status"], event["code"], event["instance"]) == (
        "SELECT shop.orders", "ok", "OK", "db-1:5432")


def test_kubernetes_and_container_resources_give_host_cgroup_and_the_pod_address() -> None:
    event = one("server", {"http.request.method": "GET", "http.route": "/x", "server.address": "cart.shop.svc",
                           "server.port": 8080, "http.response.status_code": 200},
                resource={"service.name": "cart", "service.version": "v7", "host.name": "cart-7d9f-abcde",
                          "k8s.node.name": "node-3", "k8s.pod.ip": "10.1.2.3", "container.id": "3f2a9c"})
    assert (event["host"], event["cgroup"], event["instance"], event["version"]) == (
        "node-3", "3f2a9c", "10.1.2.3:8080", "v7")


def test_server_instance_sources_in_order() -> None:
    local = {"http.request.method": "GET", "network.local.address": "::ffff:10.0.0.8", "network.local.port": 81,
             "server.address": "lb.example.com", "server.port": 443}
    assert one("server", local)["instance"] == "10.0.0.8:81"  # the socket the request reached
    v6 = {"http.request.method": "GET", "net.host.ip": "2001:db8::1", "net.host.port": 8080}
    assert one("server", v6)["instance"] == "[2001:db8::1]:8080"
    host_ip = {"http.request.method": "GET", "server.address": "lb.example.com", "server.port": 8080}
    assert one("server", host_ip, resource={"service.name": "s", "host.ip": ["10.9.9.9", "172.17.0.1"]})[
        "instance"] == "10.9.9.9:8080"
    explicit = {"svcpulse.instance": "10.4.4.4:9000", "service.name": "s"}
    assert one("server", local, resource=explicit)["instance"] == "10.4.4.4:9000"
    bare = {"http.request.method": "GET", "url.scheme": "https"}
    assert one("server", bare, resource={"service.name": "s", "host.name": "web-1"})["instance"] == "web-1:443"


def test_no_service_name_is_reported_as_opentelemetry_names_it() -> None:
    event = one("server", {"http.request.method": "GET", "server.address": "a", "server.port": 1}, resource={})
    assert event["callee"] == "unknown_service"


@pytest.mark.parametrize(("kind", "attributes", "reason"), [
    ("internal", {}, "internal"), ("unspecified", {}, "internal"), ("producer", {}, "messaging"),
    ("consumer", {}, "messaging"), ("server", {"svcpulse.measured": True}, "measured_by_interceptor")])
def test_spans_that_are_not_rpc_calls_are_skipped_not_rejected(kind: str, attributes: dict, reason: str) -> None:
    mapped = map_request(request(resource_spans(PY_RESOURCE, [span(kind, attributes=attributes)])), NOW_MS)
    assert (mapped.events(), dict(mapped.skipped), dict(mapped.rejected)) == ([], {reason: 1}, {})


@pytest.mark.parametrize(("start_ns", "duration_ms", "reason"), [
    (0, 5, "bad_timestamps"),
    (NOW_MS * 1_000_000, -5, "bad_timestamps"),
    (1, 5, "implausible_time"),  # 1970
    (NOW_MS * 1_000_000 - 8 * 86_400 * 10**9, 5, "implausible_time"),  # 8 days old
    (NOW_MS * 1_000_000 + 3600 * 10**9, 5, "implausible_time"),  # an hour in the future
    (2**63 - 10**12, 0.5, "implausible_time")])
def test_absurd_timestamps_are_rejected_with_the_reason(start_ns: int, duration_ms: float, reason: str) -> None:
    bad = span("server", start_ns=start_ns, duration_ms=duration_ms)
    mapped = map_request(request(resource_spans(PY_RESOURCE, [bad, span("server")])), NOW_MS)
    assert len(mapped.calls) == 1 and dict(mapped.rejected) == {reason: 1}
    assert "start" in mapped.examples[reason]


def test_attribute_and_span_limits() -> None:
    limits = Limits(max_spans=3, max_attributes=10)
    crowded = span("server", attributes={f"k{n}": n for n in range(11)})
    mapped = map_request(request(resource_spans(PY_RESOURCE, [crowded, span("server")])), NOW_MS, limits)
    assert len(mapped.calls) == 1 and dict(mapped.rejected) == {"too_many_attributes": 1}
    big_resource = resource_spans({f"r{n}": n for n in range(11)}, [span("server")] * 2)
    mapped = map_request(request(big_resource), NOW_MS, limits)
    assert mapped.calls == [] and dict(mapped.rejected) == {"too_many_attributes": 2}
    many = resource_spans(PY_RESOURCE, [span("server")] * 2)
    mapped = map_request(request(many, many, many), NOW_MS, limits)
    assert (mapped.spans, len(mapped.calls), dict(mapped.rejected)) == (6, 3, {"span_limit": 3})
    assert "more than 3 spans" in mapped.examples["span_limit"]
