"""The receiver over real sockets (uvicorn and grpc.aio in their thread), feeding a real JSON-lines sink:
both encodings and transports, partial success, hostile input (each a clear 4xx, and the receiver keeps
serving), tokens with the ingest role, the span budget and the metrics."""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from prometheus_client import REGISTRY

from api.auth import Directory, hash_token, load_users
from collectors.sink_common import JsonlSink
from otlp.guard import Guard
from otlp.ingest import Ingest
from otlp.mapping import Limits
from otlp.server import Receiver, in_thread
from tests.otlp.spans import request, resource_spans, span

PROTOBUF = {"content-type": "application/x-protobuf"}
MAX_BYTES = 16 * 1024 * 1024
GOOD = {"http.request.method": "GET", "http.route": "/users/{id}", "server.address": "10.0.0.5", "server.port": 8080,
        "http.response.status_code": 200}
USERS = {"collector": ["ingest"], "grafana": ["viewer"], "boss": ["viewer", "operator", "admin"]}


def good_request(n: int = 2) -> bytes:
    return request(resource_spans({"service.name": "users"}, [span("server", attributes=GOOD)] * n)).SerializeToString()


class Served:
    def __init__(self, receiver: Receiver, out: io.StringIO) -> None:
        self.receiver, self.out = receiver, out
        self.url = f"{receiver.http_url}/v1/traces"

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return httpx.post(self.url, content=body, headers={**PROTOBUF, **(headers or {})}, timeout=30)

    def still_serving(self) -> None:
        before = len(self.events())
        assert self.post(good_request()).status_code == 200
        assert len(self.events()) == before + 2


@pytest.fixture
def served() -> Iterator[Served]:
    yield from _serve(Guard(Directory({}), True, 1000.0, 100), Limits(max_spans=50))


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[Served]:
    users = [{"name": n, "roles": roles, "token_sha256": hash_token(f"t-{n}")} for n, roles in USERS.items()]
    (tmp_path / "users.json").write_text(json.dumps({"users": users}))
    directory = Directory(load_users(str(tmp_path / "users.json")))
    # a burst of 10 spans (one full request), then one span every 100 s
    yield from _serve(Guard(directory, False, rate_spans_per_s=0.01, max_spans=10), Limits(max_spans=10))


def _serve(guard: Guard, limits: Limits) -> Iterator[Served]:
    out = io.StringIO()
    with in_thread(Receiver(Ingest(JsonlSink(out), guard, limits), "127.0.0.1", 0, 0, MAX_BYTES)) as receiver:
        yield Served(receiver, out)


def test_protobuf_json_and_grpc_requests_become_events(served: Served) -> None:
    body = request(resource_spans({"service.name": "users"}, [span("server", attributes=GOOD)]))
    answer = served.post(gzip.compress(body.SerializeToString()), {"content-encoding": "gzip"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-protobuf"
    assert ExportTraceServiceResponse.FromString(answer.content) == ExportTraceServiceResponse()
    answer = httpx.post(served.url, content=json_format.MessageToJson(body),
                        headers={"content-type": "application/json"})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    with grpc.insecure_channel(served.receiver.grpc_target) as channel:
        reply = TraceServiceStub(channel).Export(body, timeout=10, compression=grpc.Compression.Gzip)
    assert reply == ExportTraceServiceResponse()
    events = served.events()
    assert len(events) == 3 and all(e["interface"] == "GET /users/{id}" and e["callee"] == "users" for e in events)


def test_a_partly_bad_request_is_a_partial_success_with_the_rejected_count(served: Served) -> None:
    spans = [span("server", attributes=GOOD), span("server", start_ns=0), span("internal"), span("server", start_ns=1)]
    answer = served.post(request(resource_spans({"service.name": "users"}, spans)).SerializeToString())
    partial = ExportTraceServiceResponse.FromString(answer.content).partial_success
    assert answer.status_code == 200 and partial.rejected_spans == 2
    assert "bad_timestamps" in partial.error_message and "implausible_time" in partial.error_message
    over = served.post(good_request(60))  # Limits(max_spans=50)
    partial = ExportTraceServiceResponse.FromString(over.content).partial_success
    assert partial.rejected_spans == 10 and "more than 50 spans" in partial.error_message
    assert len(served.events()) == 1 + 50


def refused(answer: httpx.Response, status: int, words: str) -> None:
    assert answer.status_code == status, (answer.status_code, answer.content[:300])
    message = (json.loads(answer.content)["message"] if answer.headers["content-type"] == "application/json"
               else Status.FromString(answer.content).message)
    assert words in message, message


def test_hostile_input_gets_a_clear_4xx_and_the_receiver_keeps_serving(served: Served) -> None:
    refused(served.post(b"\x00\xffgarbage" * 100), 400, "not a valid protobuf")
    served.still_serving()
    refused(served.post(b"{not json", {"content-type": "application/json"}), 400, "not a valid OTLP JSON")
    nested = '{"kvlistValue":{"values":[{"key":"k","value":' * 5000 + '{"stringValue":"x"}' + "}]}}" * 5000
    deep = ('{"resourceSpans":[{"scopeSpans":[{"spans":[{"name":"x","attributes":[{"key":"deep","value":'
            + nested + "}]}]}]}]}")
    refused(served.post(deep.encode(), {"content-type": "application/json"}), 400, "recursion")
    refused(served.post(good_request(), {"content-type": "text/plain"}), 415, "unsupported Content-Type")
    refused(served.post(good_request(), {"content-encoding": "br"}), 415, "unsupported Content-Encoding")
    served.still_serving()
    refused(served.post(b"\x00" * 50_000_000), 413, "larger than 16777216 bytes")
    served.still_serving()
    refused(served.post(gzip.compress(b"\x00" * 40_000_000), {"content-encoding": "gzip"}), 413, "decompressed")
    refused(served.post(gzip.compress(good_request())[:-20], {"content-encoding": "gzip"}), 400, "truncated")
    routed = span("server", attributes={**GOOD, "http.route": "/ROUTE"})
    bad_utf8 = request(resource_spans({"service.name": "u"}, [routed]))
    refused(served.post(bad_utf8.SerializeToString().replace(b"ROUTE", b"\xff\xfe\xfd\xfc\xfb")), 400,
            "not a valid protobuf")  # an attribute the mapping reads is decoded when first met: checked then
    absurd = [span("server", attributes=GOOD, start_ns=s) for s in (1, 2**63 - 10**12, 0)]
    refused(served.post(request(resource_spans({"service.name": "u"}, absurd)).SerializeToString()), 400,
            "rejected 3 of 3 spans")
    crowded = span("server", attributes={f"attribute.{n}": n for n in range(100_000)})
    refused(served.post(request(resource_spans({"service.name": "u"}, [crowded])).SerializeToString()), 400,
            "100000 attributes")
    refused(httpx.get(served.url), 405, "POST")
    served.still_serving()
    with grpc.insecure_channel(served.receiver.grpc_target) as channel, pytest.raises(grpc.RpcError) as failed:
        TraceServiceStub(channel).Export(request(resource_spans({"service.name": "u"}, [crowded])), timeout=10)
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "100000 attributes" in failed.value.details()
    huge = span("server", attributes={"note": "x" * (MAX_BYTES + 1)})
    with grpc.insecure_channel(served.receiver.grpc_target) as channel, pytest.raises(grpc.RpcError) as failed:
        TraceServiceStub(channel).Export(request(resource_spans({"service.name": "u"}, [huge])), timeout=30)
    assert failed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # gRPC's own message size limit
    served.still_serving()


def test_tokens_need_the_ingest_role_and_each_sender_has_a_span_budget(guarded: Served) -> None:
    refused(guarded.post(good_request()), 401, "missing bearer token")
    refused(guarded.post(good_request(), {"authorization": "Bearer nope"}), 401, "invalid token")
    for user in ("grafana", "boss"):
        refused(guarded.post(good_request(), {"authorization": f"Bearer t-{user}"}), 403, "lack 'ingest'")
    collector = {"authorization": "Bearer t-collector"}
    assert guarded.post(good_request(10), collector).status_code == 200
    over = guarded.post(good_request(1), collector)
    refused(over, 429, "over its budget of 0.01 spans/s")
    assert int(over.headers["retry-after"]) >= 90
    with grpc.insecure_channel(guarded.receiver.grpc_target) as channel:
        stub, body = TraceServiceStub(channel), request(resource_spans({"service.name": "u"}, [span("server")]))
        with pytest.raises(grpc.RpcError) as failed:
            stub.Export(body, timeout=10)
        assert failed.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as failed:  # still over budget: UNAVAILABLE, which exporters retry
            stub.Export(body, timeout=10, metadata=[("authorization", "Bearer t-collector")])
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(guarded.events()) == 10


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_count_received_mapped_rejected_and_skipped_spans(served: Served) -> None:
    names = [("svcpulse_otlp_spans_received_total", {"transport": "http"}), ("svcpulse_otlp_spans_mapped_total", {}),
             ("svcpulse_otlp_spans_rejected_total", {"reason": "bad_timestamps"}),
             ("svcpulse_otlp_spans_skipped_total", {"reason": "internal"}),
             ("svcpulse_otlp_requests_total", {"transport": "http", "status": "200"})]
    before = {name: sample(name, **labels) for name, labels in names}
    spans = [span("server", attributes=GOOD), span("server", start_ns=0), span("internal")]
    assert served.post(request(resource_spans({"service.name": "u"}, spans)).SerializeToString()).status_code == 200
    text = httpx.get(f"{served.receiver.http_url}/metrics").text
    assert "svcpulse_sink_spooled_total" in text  # the sink's count of events spooled while Kafka is away
    assert [sample(name, **labels) - before[name] for name, labels in names] == [3, 1, 1, 1, 1]
