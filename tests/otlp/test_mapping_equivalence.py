"""The receiver's memoized mapping gives exactly what the former per-span mapping gave.

data/former_mapping.jsonl holds, per seed, what the former mapping (otlp/mapping.py at 31344d3, one
span at a time through the protobuf objects) made of that seed's corpus: the events as the contract let
them through (the former mapping left that to the sink), and its rejected and skipped counts.

A seeded corpus mixes every attribute the rules read, in both naming conventions, with awkward values
(empty strings, zeros, booleans, numbers as strings, arrays, IPv6 and IPv4-mapped addresses, URLs with
bad ports, oversized names), every span kind and status, several resources and bad timestamps. The former
mapping saw it as protobuf; the new one sees it also as OTLP/JSON (json_format's rendering, as SDKs send it).
Events are compared field for field after the contract (the former mapping left that to the sink).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otlp import json_request, projection
from otlp.mapping import Mapper
from pipeline.events import validate
from tests.otlp.spans import KINDS, STATUS, request, resource_spans, span

NOW_MS = 1_790_000_000_000
_VALUES: dict[str, list[Any]] = {
    "http.request.method": ["GET", "POST", "", ["GET"]], "http.method": ["GET", "DELETE", 0],
    "http.route": ["/users/{id}", "/x", ""], "url.template": ["/invoices/{id}"],
    "http.response.status_code": [200, 404, 429, 503, 504, "500", 0, True, 2.0],
    "http.status_code": [200, 500, "x"],
    "rpc.grpc.status_code": [0, 4, 5, 14, 99, -1, "3"], "rpc.response.status_code": ["UNAVAILABLE", "ok", "nope"],
    "rpc.service": ["users.v1.Users", ""], "rpc.method": ["GetUser", "users.v1.Users/GetUser", "/a/b", ""],
    "url.scheme": ["http", "https", "ftp"], "http.scheme": ["https"],
    "url.full": ["http://users.prod.svc:8080/users/42?x=1", "https://api.example.com/v1/o/9", "http://h:notaport/",
                 "https://[2001:db8::5]/p", "not a url", ""],
    "http.url": ["http://inventory:9000/a", "https://billing/x"],
    "peer.service": ["billing", "", 7], "error.type": ["ECONNREFUSED", "TimeoutError", "deadline", ""],
    "server.address": ["10.0.0.5", "lb.example.com", "::ffff:10.0.0.8", "2001:db8::1", "[2001:db8::2]", ""],
    "server.port": [8080, 443, 0, "9090", "x"], "net.peer.name": ["inventory", ""], "net.peer.port": [9000, "80"],
    "network.peer.address": ["10.9.9.9"], "network.peer.port": [5432],
    "net.sock.peer.addr": ["10.8.8.8"], "net.sock.peer.port": [6379],
    "network.local.address": ["10.0.0.7", "::1"], "network.local.port": [81, 0],
    "net.sock.host.addr": ["10.0.0.6"], "net.sock.host.port": [8081], "net.host.ip": ["2001:db8::9"],
    "net.host.port": [8080, "8443"], "net.host.name": ["cart.svc", ""],
    "http.host": ["127.0.0.1:8080", "[::1]:90", "example.com", "h:x"], "url.port": [8443, "7"],
    "svcpulse.measured": [True, False, 1, ""], "db.system": ["postgresql"], "http.target": ["/users/42"],
}
_RESOURCES = [
    {"service.name": "users", "service.version": "1.4.2", "host.name": "node-1"},
    {"service.name": "cart", "service.version": "v7", "host.name": "cart-7d9f", "k8s.node.name": "node-3",
     "k8s.pod.ip": "10.1.2.3", "container.id": "3f2a9c"},
    {"host.ip": ["10.2.0.1", "10.2.0.2"], "service.name": ""},
    {"service.name": "front", "svcpulse.instance": "10.0.0.1:8000", "host.ip": "::ffff:10.3.0.1"},
    {"service.name": "x" * 300},  # beyond the contract's bounds: every server span of it is refused
    {"service.name": 42, "service.version": 1.5, "k8s.pod.ip": "2001:db8::7"},
    {"service.name": "", "service.version": 0, "host.name": False, "k8s.node.name": "", "host.ip": [""]},
]
_NAMES = ["GET /users/{id}", "SELECT shop.orders", "", "y" * 300]


def _span(rng: random.Random) -> Any:
    keys = rng.sample(sorted(_VALUES), rng.randint(0, 9))
    attributes = {key: rng.choice(_VALUES[key]) for key in keys}
    start = NOW_MS * 1_000_000 - rng.randint(0, 5_000_000_000)
    start = rng.choice([start] * 12 + [0, 2_000_000, NOW_MS * 1_000_000 + 3_600_000_000_000,
                                       (NOW_MS - 8 * 86_400_000) * 1_000_000])
    duration = max(rng.choice([0.0, 0.001, 12.345678, 250.0, -1.0, 86_400_000.0]), -start / 1_000_000)
    return span(rng.choice(sorted(KINDS)), rng.choice(_NAMES), attributes, start, duration, rng.choice(sorted(STATUS)))


def _corpus(seed: int) -> ExportTraceServiceRequest:
    rng = random.Random(seed)
    return request(*(resource_spans(rng.choice(_RESOURCES), [_span(rng) for _ in range(rng.randint(1, 60))])
                     for _ in range(rng.randint(1, 6))))


FORMER = {row["seed"]: row for row in map(json.loads, (Path(__file__).parent / "data" / "former_mapping.jsonl")
                                           .read_text().splitlines())}


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_the_memoized_mapping_gives_the_former_mappings_events(seed: int, encoding: str) -> None:
    message = _corpus(seed)
    if encoding == "protobuf":
        parsed = projection.parse(message.SerializeToString())
    else:
        parsed = json_request.parse(json_format.MessageToJson(message).encode())
    mapper = Mapper()
    for _ in range(2):  # the second pass maps from what the first one memoized
        new = mapper.map(parsed, NOW_MS)
        events = [validate("rpc", event) for event in new.events()]
        former = FORMER[seed]
        assert (events, dict(new.rejected), dict(new.skipped)) == \
            (former["events"], former["rejected"], former["skipped"])
