"""Mixed fleet: one service reported by svcpulse's Python interceptors AND by OpenTelemetry over OTLP at
once is counted once. The interceptors mark the OTel span of each call they report (collectors/rpc/otel.py),
whichever of the two wraps the other, and the receiver skips marked spans (docs/otlp.md, "Mixed fleets")."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from prometheus_client import REGISTRY

from collectors.rpc.asgi import SvcpulseMiddleware
from collectors.rpc.common import RpcConfig
from collectors.rpc.emitter import Emitter
from collectors.rpc.httpx import SvcpulseTransport
from collectors.rpc.otel import MEASURED, MarkMeasured
from collectors.sink import open_sink
from otlp.server import Receiver
from pipeline.store import Store
from svcpulse.services import Tansu
from tests.integration.helpers import wait_for
from tests.integration.weights_helpers import serve
from tests.otlp.otel_clients import Traced, exporter

pytestmark = pytest.mark.services
CALLS = 10


@pytest.fixture
def emitter(broker: Tansu) -> Iterator[Emitter]:
    sink = open_sink(broker.bootstrap, linger_ms=5)
    emitter = Emitter(sink, poll_s=0.01).start()
    yield emitter
    emitter.close()
    sink.close()


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_call_reported_by_an_interceptor_and_by_opentelemetry_is_counted_once(
        receiver: Receiver, ch_store: Store, emitter: Emitter) -> None:
    users = Traced("shop.users", exporter("http", receiver))
    web = Traced("shop.web", exporter("http", receiver))
    web.provider.add_span_processor(MarkMeasured())  # the OTel client span starts inside svcpulse's transport
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def get_user(user_id: int) -> dict[str, int]:
        return {"user_id": user_id}

    app.add_middleware(SvcpulseMiddleware, config=RpcConfig(service="shop.users", version="2.0.1"), emitter=emitter)
    FastAPIInstrumentor.instrument_app(app, tracer_provider=users.provider)  # OTel's server span wraps ours
    skipped_before = counter("svcpulse_otlp_spans_skipped_total", reason="measured_by_interceptor")
    mapped_before = counter("svcpulse_otlp_spans_mapped_total")
    HTTPXClientInstrumentor().instrument(tracer_provider=web.provider)  # patches the base transport: inside ours
    try:
        transport = SvcpulseTransport(RpcConfig(service="shop.web"), callee="shop.users", routes=["/users/{user_id}"],
                                      emitter=emitter)
        with serve(app) as base, httpx.Client(base_url=base, transport=transport, timeout=10) as client:
            assert all(client.get(f"/users/{n}").status_code == 200 for n in range(CALLS))
    finally:
        HTTPXClientInstrumentor().uninstrument()
    spans = users.spans() + web.spans()
    assert len(spans) == 2 * CALLS and all(s.attributes[MEASURED] is True for s in spans)
    assert emitter.flush(30)

    wait_for(lambda: counter("svcpulse_otlp_spans_skipped_total", reason="measured_by_interceptor")
             >= skipped_before + 2 * CALLS, 30, "the receiver to see the marked spans")
    wait_for(lambda: ch_store.execute("SELECT count() FROM rpc_calls")[0][0] >= 2 * CALLS, 60, "interceptor rows")
    rows = ch_store.query("SELECT side, count() AS calls FROM rpc_calls WHERE callee = 'shop.users' GROUP BY side "
                          "ORDER BY side")
    assert rows == [{"side": "client", "calls": CALLS}, {"side": "server", "calls": CALLS}]
    assert counter("svcpulse_otlp_spans_mapped_total") == mapped_before  # no span became a second event
    for traced in (users, web):
        traced.provider.shutdown()
