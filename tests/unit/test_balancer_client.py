"""WeightFeedClient and Balancer against a real uvicorn server serving the weight-feed contract."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from balancer.client import Balancer, WeightFeedClient


def feed(revision: str, weights: dict[str, int], states: dict[str, str] | None = None) -> dict[str, Any]:
    rows = [
        {
            "instance": name,
            "weight": w,
            "state": (states or {}).get(name, "healthy"),
            "reason": "",
            "version": "",
        }
        for name, w in weights.items()
    ]
    head = {
        "service": "shop.cart",
        "revision": revision,
        "generated_at_ms": 1,
        "window_s": 10,
        "mode": "normal",
    }
    return {**head, "instances": rows}


class FeedServer:
    """GET /v1/weights/{service}: ETag = quoted revision, If-None-Match -> 304, ?wait_s long-poll."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.status = 200  # set to 503 to simulate a broken API
        self.long_poll = True  # False: answer at once, as a server that ignores wait_s would
        self.seen: list[tuple[str, str | None, str | None]] = []  # (authorization, if-none-match, wait_s)
        app = FastAPI()
        app.get("/v1/weights/{service}")(self._weights)
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    async def _weights(self, service: str, request: Request, wait_s: float = 0.0) -> Response:
        asked = request.headers.get("if-none-match")
        self.seen.append(
            (request.headers.get("authorization", ""), asked, request.query_params.get("wait_s"))
        )
        if self.status != 200:
            return Response(status_code=self.status)
        deadline = asyncio.get_running_loop().time() + (wait_s if self.long_poll else 0)
        while asked == self._etag() and asyncio.get_running_loop().time() < deadline:
            if await request.is_disconnected():
                return Response(status_code=499)
            await asyncio.sleep(0.02)
        if asked == self._etag():
            return Response(status_code=304, headers={"ETag": self._etag()})
        return JSONResponse(self.document, headers={"ETag": self._etag()})

    def _etag(self) -> str:
        return f'"{self.document["revision"]}"'

    def start(self) -> FeedServer:
        self._thread.start()
        deadline = time.monotonic() + 5
        while not self._server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    running = FeedServer(feed("r1", {"10.0.0.1:80": 3, "10.0.0.2:80": 1})).start()
    yield running
    running.stop()


@pytest.fixture
def make_client() -> Iterator[Callable[..., WeightFeedClient]]:
    clients: list[WeightFeedClient] = []

    def make(url: str, **kw: Any) -> WeightFeedClient:
        client = WeightFeedClient(url, "shop.cart", **kw).start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def eventually(check: Callable[[], bool], within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


def test_follows_the_feed_and_picks_by_weight(
    server: FeedServer, make_client: Callable[..., WeightFeedClient]
) -> None:
    client = make_client(server.url, token="s3cret", wait_s=5)
    assert client.wait_ready(3)
    balancer = Balancer(client)
    assert Counter(balancer.pick() for _ in range(400)) == {"10.0.0.1:80": 300, "10.0.0.2:80": 100}
    assert server.seen[0] == ("Bearer s3cret", None, None)  # first request: no revision, no wait


def test_long_poll_returns_as_soon_as_the_revision_changes(
    server: FeedServer, make_client: Callable[..., WeightFeedClient]
) -> None:
    client = make_client(server.url, wait_s=10)
    assert client.wait_ready(3)
    assert eventually(lambda: len(server.seen) >= 2)  # the long-poll is parked on the server
    changed_at = time.monotonic()
    server.document = feed("r2", {"10.0.0.1:80": 1, "10.0.0.3:80": 1})
    assert eventually(lambda: client.current().revision == "r2")
    assert time.monotonic() - changed_at < 2  # far sooner than wait_s
    assert client.current().weights == {"10.0.0.1:80": 1, "10.0.0.3:80": 1}
    assert server.seen[1][1:] == ('"r1"', "10")  # the revision goes back quoted, as an ETag


def test_304_keeps_weights_and_counts_as_contact(
    server: FeedServer, make_client: Callable[..., WeightFeedClient]
) -> None:
    client = make_client(server.url, wait_s=0.1, expiry_s=0.5)
    assert client.wait_ready(3)
    key = client.current().key
    time.sleep(1.0)  # several 304s, longer than expiry_s
    view = client.current()
    assert len(server.seen) >= 4
    assert (view.stale, view.key, view.weights) == (False, key, {"10.0.0.1:80": 3, "10.0.0.2:80": 1})


def test_unreachable_keeps_last_weights_then_equal_after_expiry(
    make_client: Callable[..., WeightFeedClient],
) -> None:
    server = FeedServer(feed("r1", {"a:1": 9, "b:1": 1, "c:1": 0}, {"c:1": "drained"})).start()
    client = make_client(server.url, wait_s=0.2, expiry_s=1.0, max_backoff_s=0.2)
    assert client.wait_ready(3)
    server.stop()
    assert eventually(lambda: client.last_error != "")
    assert client.current().weights == {"a:1": 9, "b:1": 1, "c:1": 0}  # still the last known
    assert eventually(lambda: client.current().stale)
    assert client.current().weights == {"a:1": 1, "b:1": 1}  # equal, except the drained one
    balancer = Balancer(client)
    assert Counter(balancer.pick() for _ in range(10)) == {"a:1": 5, "b:1": 5}


def test_server_errors_keep_the_last_weights(
    server: FeedServer, make_client: Callable[..., WeightFeedClient]
) -> None:
    client = make_client(server.url, wait_s=0.1, max_backoff_s=0.1)
    assert client.wait_ready(3)
    server.status = 503
    assert eventually(lambda: "503" in client.last_error)
    assert client.current().weights == {"10.0.0.1:80": 3, "10.0.0.2:80": 1}
    assert not client.current().stale


def test_a_server_ignoring_the_long_poll_is_not_hammered(
    server: FeedServer, make_client: Callable[..., WeightFeedClient]
) -> None:
    server.long_poll = False
    client = make_client(server.url, wait_s=30)
    assert client.wait_ready(3)
    time.sleep(1.5)
    assert len(server.seen) <= 3  # paced at one request per second, not a tight loop


def test_fallback_instances_before_any_feed(make_client: Callable[..., WeightFeedClient]) -> None:
    client = make_client("http://127.0.0.1:9", fallback=["x:1", "y:1"], max_backoff_s=0.1)
    assert not client.wait_ready(0.2)
    assert client.current().weights == {"x:1": 1, "y:1": 1}


def test_close_aborts_a_parked_long_poll(server: FeedServer) -> None:
    client = WeightFeedClient(server.url, "shop.cart", wait_s=30).start()
    assert client.wait_ready(3)
    assert eventually(lambda: len(server.seen) >= 2)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 2


def test_balancer_counts_in_flight_and_reports(
    server: FeedServer, make_client: Callable[..., WeightFeedClient]
) -> None:
    client = make_client(server.url, wait_s=5)
    assert client.wait_ready(3)
    results: list[tuple[str, bool]] = []
    balancer = Balancer(client, picker="p2c", on_result=lambda name, ok, ms: results.append((name, ok)))
    with balancer.call() as first:
        assert balancer.inflight() == {first: 1}
        with balancer.call() as second:
            assert balancer.inflight() == {first: 1, second: 1} or first == second
    assert balancer.inflight() == {}
    with pytest.raises(ZeroDivisionError), balancer.call() as failing:
        1 / 0  # noqa: B018
    assert results == [(second, True), (first, True), (failing, False)]
    held = balancer.pick()
    balancer.report(held, ok=True, latency_ms=3.0)
    assert balancer.inflight() == {}


def test_unknown_picker_is_rejected(server: FeedServer) -> None:
    with pytest.raises(ValueError):
        Balancer(WeightFeedClient(server.url, "shop.cart"), picker="random")  # type: ignore[arg-type]
