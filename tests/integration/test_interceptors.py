"""RPC interceptors against real servers: FastAPI under uvicorn called by httpx (sync and async), and a
grpcio server/client pair (generic handlers, bytes in and out). Every event is checked against the
contract by the capturing sink (pipeline.events.validate) on its way through the real emitter.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import httpx
import pytest
import uvicorn
from fastapi import FastAPI, HTTPException, Response
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from collectors.rpc.asgi import SvcpulseMiddleware
from collectors.rpc.common import RpcConfig
from collectors.rpc.emitter import Emitter
from collectors.rpc.grpc import SvcpulseClientInterceptor, SvcpulseServerInterceptor
from collectors.rpc.httpx import AsyncSvcpulseTransport, SvcpulseTransport
from pipeline.events import validate
from svcpulse.services import free_port


class CaptureSink:
    """A sink that keeps events after validating them against the contract (a bad one fails the test)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def send(self, kind: str, event: dict[str, Any]) -> None:
        self.events.append(validate(kind, event))

    def flush(self, timeout_s: float = 10.0) -> bool:
        return True


def capture() -> tuple[Emitter, CaptureSink]:
    sink = CaptureSink()
    return Emitter(sink, poll_s=0.01).start(), sink


def take(emitter: Emitter, sink: CaptureSink, expect: int = 0) -> list[dict[str, Any]]:
    """The events so far; with `expect`, wait up to 5 s for that many (the server side emits its event
    after the response is sent, so the client can see the response first)."""
    deadline = time.monotonic() + 5
    while True:
        assert emitter.flush(5)
        if len(sink.events) >= expect or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    events, sink.events = sink.events, []
    return events


# -- HTTP: FastAPI under uvicorn ------------------------------------------------------------------
def build_app(emitter: Emitter) -> FastAPI:
    app = FastAPI()

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> dict[str, int]:
        if user_id == 0:
            raise HTTPException(404, "no such user")
        return {"id": user_id}

    @app.get("/fail")
    async def fail() -> Response:
        return Response(status_code=503)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("handler bug")

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(0.6)
        return {"ok": "late"}

    sub = Starlette(routes=[Route("/items/{item_id}", lambda request: PlainTextResponse("item"))])
    app.router.routes.append(Mount("/sub", app=sub))
    config = RpcConfig(service="users", version="1.2.3", instance="users-1:8000")
    app.add_middleware(SvcpulseMiddleware, config=config, emitter=emitter)
    return app


@pytest.fixture(scope="module")
def http_server() -> Iterator[tuple[str, Emitter, CaptureSink]]:
    emitter, sink = capture()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(emitter), host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started
    yield f"http://127.0.0.1:{port}", emitter, sink
    server.should_exit = True
    thread.join(10)
    emitter.close()


ROUTES = ["/users/{user_id}", "/fail", "/boom", "/slow", "/sub/items/{item_id}"]
EXPECTED = {  # path -> (interface, status, code), the same on both sides
    "/users/42": ("/users/{user_id}", "ok", "200"),
    "/users/0": ("/users/{user_id}", "ok", "404"),
    "/fail": ("/fail", "error", "503"),
    "/boom": ("/boom", "error", "500"),
    "/no/such/7": ("unmatched", "ok", "404"),
    "/sub/items/9": ("/sub/items/{item_id}", "ok", "200"),
}


# uvicorn may close a connection after a handler raised (/boom); a request already sent on it would
# fail with ReadError. A connection per request keeps the test about the interceptors.
NO_KEEPALIVE = {"Connection": "close"}


def by_side(events: list[dict[str, Any]], side: str) -> list[dict[str, Any]]:
    return [e for e in events if e["side"] == side]


def check_http_events(events: list[dict[str, Any]], base: str) -> None:
    port = base.rsplit(":", 1)[1]
    client, server = by_side(events, "client"), by_side(events, "server")
    assert [(e["interface"], e["status"], e["code"]) for e in client] == list(EXPECTED.values())
    assert [(e["interface"], e["status"], e["code"]) for e in server] == list(EXPECTED.values())
    for e in client:
        assert (e["caller"], e["callee"], e["instance"]) == ("web", "users", f"127.0.0.1:{port}")
        assert e["latency_ms"] > 0 and e["cgroup"].startswith("/")
    assert client[0]["version"] == "1.2.3"  # learnt from the server's x-svcpulse-version header
    for e in server:
        assert (e["caller"], e["callee"], e["instance"], e["version"]) == (
            "web",
            "users",
            "users-1:8000",
            "1.2.3",
        )


def test_httpx_sync_and_asgi_server(http_server: tuple[str, Emitter, CaptureSink]) -> None:
    base, server_emitter, server_sink = http_server
    emitter, sink = capture()
    transport = SvcpulseTransport(RpcConfig(service="web"), callee="users", routes=ROUTES, emitter=emitter)
    with httpx.Client(transport=transport, base_url=base) as client:
        for path in EXPECTED:
            client.get(path, headers=NO_KEEPALIVE)
    check_http_events(take(emitter, sink) + take(server_emitter, server_sink, len(EXPECTED)), base)


def test_httpx_async(http_server: tuple[str, Emitter, CaptureSink]) -> None:
    base, server_emitter, server_sink = http_server
    emitter, sink = capture()

    async def main() -> None:
        config = RpcConfig(service="web")
        transport = AsyncSvcpulseTransport(config, callee={"127.0.0.1": "users"}, routes=ROUTES, emitter=emitter)
        async with httpx.AsyncClient(transport=transport, base_url=base) as client:
            for path in EXPECTED:
                await client.get(path, headers=NO_KEEPALIVE)

    asyncio.run(main())
    check_http_events(take(emitter, sink) + take(server_emitter, server_sink, len(EXPECTED)), base)


def test_httpx_timeout_connect_error_and_explicit_interface(
    http_server: tuple[str, Emitter, CaptureSink],
) -> None:
    base, server_emitter, server_sink = http_server
    emitter, sink = capture()
    transport = SvcpulseTransport(RpcConfig(service="web"), routes=ROUTES, emitter=emitter)
    with httpx.Client(transport=transport, base_url=base) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/slow", timeout=0.15)
        with pytest.raises(httpx.ConnectError):
            client.get(f"http://127.0.0.1:{free_port()}/users/1")
        client.get("/users/5", extensions={"svcpulse_interface": "GetUser"})
    slow, refused, named = take(emitter, sink)
    assert (slow["interface"], slow["status"], slow["code"]) == ("/slow", "timeout", "ReadTimeout")
    assert slow["callee"] == "127.0.0.1"  # no callee configured: the URL's host
    assert 150 <= slow["latency_ms"] < 600
    assert (refused["status"], refused["code"], refused["interface"]) == (
        "error",
        "ConnectError",
        "/users/{user_id}",
    )
    assert (named["interface"], named["status"]) == ("GetUser", "ok")
    time.sleep(0.7)  # the server finishes /slow on its own time: it measured the full 0.6 s
    late = [e for e in take(server_emitter, server_sink) if e["interface"] == "/slow"]
    assert late and late[0]["latency_ms"] >= 590


def test_sampling_rate_zero_and_half(http_server: tuple[str, Emitter, CaptureSink]) -> None:
    base, server_emitter, server_sink = http_server
    emitter, sink = capture()
    with httpx.Client(transport=SvcpulseTransport(RpcConfig("web", sample_rate=0.0), emitter=emitter)) as c:
        c.get(f"{base}/users/1")
    assert take(emitter, sink) == []
    with httpx.Client(transport=SvcpulseTransport(RpcConfig("web", sample_rate=0.5), emitter=emitter)) as c:
        for _ in range(200):
            c.get(f"{base}/users/1")
    assert 60 <= len(take(emitter, sink)) <= 140
    take(server_emitter, server_sink)


# -- gRPC -----------------------------------------------------------------------------------------
def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    if request == b"missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    if request == b"down":
        context.abort(grpc.StatusCode.UNAVAILABLE, "shedding")
    if request == b"boom":
        raise RuntimeError("servicer bug")
    if request == b"slow":
        time.sleep(0.5)
    return request


def chunks(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    yield from (request + str(i).encode() for i in range(3))


def total(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    return b"".join(requests)


def chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for r in requests:
        yield r.upper()


@pytest.fixture(scope="module")
def grpc_pair() -> Iterator[tuple[grpc.Channel, Emitter, CaptureSink, Emitter, CaptureSink]]:
    server_emitter, server_sink = capture()
    config = RpcConfig("echo", version="2.0", instance="echo-1:50051")
    server = grpc.server(
        futures.ThreadPoolExecutor(4),
        interceptors=[SvcpulseServerInterceptor(config, emitter=server_emitter)],
    )
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("svc.Echo", {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Chunks": grpc.unary_stream_rpc_method_handler(chunks),
        "Total": grpc.stream_unary_rpc_method_handler(total),
        "Chat": grpc.stream_stream_rpc_method_handler(chat)})])  # fmt: skip
    target = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    emitter, sink = capture()
    channel = grpc.intercept_channel(
        grpc.insecure_channel(target),
        SvcpulseClientInterceptor(RpcConfig("web"), "echo", target, emitter=emitter),
    )
    yield channel, emitter, sink, server_emitter, server_sink
    channel.close()
    server.stop(0)


def outcomes(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((e["interface"], e["status"], e["code"]) for e in events)


def test_grpc_unary_status_mapping(grpc_pair: Any) -> None:
    channel, emitter, sink, server_emitter, server_sink = grpc_pair
    call = channel.unary_unary("/svc.Echo/Echo")
    assert call(b"hi") == b"hi"
    assert call.future(b"later").result() == b"later"
    for request, code in ((b"missing", grpc.StatusCode.NOT_FOUND), (b"down", grpc.StatusCode.UNAVAILABLE),
                          (b"boom", grpc.StatusCode.UNKNOWN)):  # fmt: skip
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        assert err.value.code() == code
    with pytest.raises(grpc.RpcError) as err:
        call(b"slow", timeout=0.1)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    time.sleep(0.6)  # the server finishes the slow call after the deadline
    want = [("/svc.Echo/Echo", s, c) for s, c in [("ok", "OK"), ("ok", "OK"), ("ok", "NOT_FOUND"),
            ("error", "UNAVAILABLE"), ("error", "UNKNOWN"), ("timeout", "DEADLINE_EXCEEDED")]]  # fmt: skip
    client, server = take(emitter, sink, len(want)), take(server_emitter, server_sink, len(want))
    assert outcomes(client) == sorted(want)
    assert outcomes(server) == sorted(want)
    for e in client:
        assert (e["caller"], e["callee"], e["side"]) == ("web", "echo", "client")
        assert e["instance"].startswith("127.0.0.1:")
    for e in server:
        assert (e["caller"], e["callee"], e["instance"], e["version"]) == (
            "web",
            "echo",
            "echo-1:50051",
            "2.0",
        )
    slow = next(e for e in client if e["code"] == "DEADLINE_EXCEEDED")
    assert 100 <= slow["latency_ms"] < 450


def test_grpc_streaming_calls(grpc_pair: Any) -> None:
    channel, emitter, sink, server_emitter, server_sink = grpc_pair
    assert list(channel.unary_stream("/svc.Echo/Chunks")(b"c")) == [b"c0", b"c1", b"c2"]
    assert channel.stream_unary("/svc.Echo/Total")(iter([b"a", b"b"])) == b"ab"
    assert list(channel.stream_stream("/svc.Echo/Chat")(iter([b"x", b"y"]))) == [b"X", b"Y"]
    time.sleep(0.1)  # stream calls end (and call back) on grpc's own threads
    want = sorted(("/svc.Echo/" + m, "ok", "OK") for m in ("Chunks", "Total", "Chat"))
    assert outcomes(take(emitter, sink, len(want))) == want
    assert outcomes(take(server_emitter, server_sink, len(want))) == want
