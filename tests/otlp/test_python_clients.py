"""Real OpenTelemetry Python clients -> `svcpulse otlp` -> Kafka (Tansu) -> loader -> ClickHouse 18.16.

A FastAPI service ("shop.users", instrumented with opentelemetry-instrumentation-fastapi) is called by an
httpx client of another service ("shop.web", opentelemetry-instrumentation-httpx); each exports with the
real OTLP exporter, over HTTP (protobuf) or gRPC. Every SERVER and CLIENT span must appear in
svcpulse.rpc_calls field for field, with latency within 1 ms of the span's duration.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from otlp.server import Receiver
from pipeline.store import Store
from tests.integration.helpers import count, wait_for
from tests.integration.weights_helpers import serve
from tests.otlp.otel_clients import Traced, exporter

pytestmark = pytest.mark.services
FIELDS = ("side", "ts_ms", "caller", "callee", "interface", "instance", "status", "code", "version", "host")


def users_app() -> FastAPI:
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, int]:
        if user_id == 404:
            raise HTTPException(404, "no such user")
        return {"user_id": user_id}

    @app.post("/users/{user_id}/orders")
    async def order(user_id: int) -> Response:
        return Response("sold out", status_code=503)

    return app


def expected_row(span: ReadableSpan, port: int) -> dict[str, Any]:
    """The oracle: what the table must hold for a span, written from the span itself."""
    attributes = span.attributes or {}
    code, method = int(attributes["http.status_code"]), attributes["http.method"]
    server = span.kind == SpanKind.SERVER
    return {"side": "server" if server else "client", "ts_ms": span.end_time // 1_000_000,
            "caller": "" if server else "shop.web", "callee": "shop.users" if server else "127.0.0.1",
            "interface": f"{method} {attributes['http.route']}" if server else method,  # clients know no route
            "instance": f"127.0.0.1:{port}", "status": "error" if code >= 500 else "ok", "code": str(code),
            "version": "2.0.1" if server else "", "host": "node-7" if server else "node-2",
            "latency_ms": (span.end_time - span.start_time) / 1e6}


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_spans_of_a_fastapi_service_and_its_httpx_client_become_rows_field_for_field(
        transport: str, receiver: Receiver, ch_store: Store) -> None:
    users = Traced("shop.users", exporter(transport, receiver), **{"service.version": "2.0.1", "host.name": "node-7"})
    web = Traced("shop.web", exporter(transport, receiver), **{"host.name": "node-2"})
    app = users_app()
    FastAPIInstrumentor.instrument_app(app, tracer_provider=users.provider)
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        HTTPXClientInstrumentor().instrument_client(client, tracer_provider=web.provider)
        statuses = [client.get(f"/users/{n}").status_code for n in (1, 2, 3, 404)]
        statuses.append(client.post("/users/7/orders").status_code)
    assert statuses == [200, 200, 200, 404, 503]
    port = int(base.rsplit(":", 1)[1])
    def order(row: dict[str, Any]) -> list[Any]:
        return [*(row[f] for f in FIELDS), row["latency_ms"]]

    expected = sorted((expected_row(s, port) for s in users.spans() + web.spans()), key=order)
    assert len(expected) == 10
    wait_for(lambda: count(ch_store, "rpc_calls") >= 10, 60, "10 rows in rpc_calls")
    rows = sorted(ch_store.query(f"SELECT {', '.join(FIELDS)}, latency_ms FROM rpc_calls"), key=order)
    assert [{f: r[f] for f in FIELDS} for r in rows] == [{f: r[f] for f in FIELDS} for r in expected]
    for row, want in zip(rows, expected, strict=True):
        assert abs(row["latency_ms"] - want["latency_ms"]) < 1.0, (row, want)
    for traced in (users, web):
        traced.provider.shutdown()
