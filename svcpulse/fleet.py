"""A real fleet on loopback: N instrumented HTTP instances with fault knobs, and traffic through a Balancer.

Each instance is a Starlette app under uvicorn (own thread, own port) wrapped in the ASGI interceptor,
so every call becomes a contract rpc event (side "server") shipped to Kafka by the shared sink.
`Traffic` drives calls from worker threads through balancer.client.Balancer and records each
outcome, so tests and bench/controlloop.py can measure shares, error rates and latency.

    with Fleet("fleet.app", bootstrap, size=5) as fleet, Traffic(fleet, source, threads=8) as traffic:
        fleet.instances[1].error_rate = 0.5       # half its calls now answer 503
        fleet.instances[3].extra_ms = 200         # every call 200 ms slower
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from balancer.client import Balancer, FeedView, WeightSource
from balancer.pickers import NoInstancesError
from collectors.rpc.asgi import SvcpulseMiddleware
from collectors.rpc.common import RpcConfig
from collectors.rpc.emitter import Emitter
from collectors.sink import open_sink
from svcpulse.services import free_port


@dataclass
class Instance:
    address: str
    version: str = "v1"
    base_ms: float = 5.0  # the handler's normal work
    error_rate: float = 0.0  # fault knob: share of calls answered 503
    extra_ms: float = 0.0  # fault knob: added to every call
    _failures_owed: float = 0.5  # rounds the share half-up at every call count

    def fails_next_call(self) -> bool:
        """Spread failures evenly rather than by chance: at 8% exactly 8 of every 100 calls fail, so a
        sick instance that a balancer steers around still shows its rate after 20 calls, not 8% on average
        with a one-in-five chance of looking healthier than it is (the demo's map story depends on it)."""
        self._failures_owed += self.error_rate
        if self._failures_owed < 1.0:
            return False
        self._failures_owed -= 1.0
        return True


def _app(instance: Instance, service: str, emitter: Emitter) -> Any:
    async def work(request: Request) -> PlainTextResponse:
        await asyncio.sleep((instance.base_ms * random.uniform(0.8, 1.2) + instance.extra_ms) / 1000)
        failed = instance.fails_next_call()
        return PlainTextResponse("failed" if failed else "ok", status_code=503 if failed else 200)

    app = Starlette(routes=[Route("/work", work)])
    config = RpcConfig(service=service, version=instance.version, instance=instance.address)
    return SvcpulseMiddleware(app, config=config, emitter=emitter)


class Fleet:
    def __init__(self, service: str, bootstrap: str, size: int = 5, versions: tuple[str, ...] = ()) -> None:
        self.service = service
        self.instances = [Instance(f"127.0.0.1:{free_port()}", versions[n] if n < len(versions) else "v1")
                          for n in range(size)]
        self._sink = open_sink(bootstrap, linger_ms=20)
        self._emitter = Emitter(self._sink, max_queue=100_000, poll_s=0.02)
        self._servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def __enter__(self) -> Fleet:
        self._emitter.start()
        for instance in self.instances:
            port = int(instance.address.rsplit(":", 1)[1])
            server = uvicorn.Server(uvicorn.Config(_app(instance, self.service, self._emitter), host="127.0.0.1",
                                                   port=port, log_level="warning", access_log=False))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            self._servers.append((server, thread))
        deadline = time.monotonic() + 20
        while not all(s.started for s, _ in self._servers):
            if time.monotonic() > deadline:
                raise RuntimeError("fleet instances did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for server, _ in self._servers:
            server.should_exit = True
        for _, thread in self._servers:
            thread.join(timeout=10)
        self._emitter.close()
        self._sink.close()

    @property
    def addresses(self) -> list[str]:
        return [i.address for i in self.instances]


def paced_calls(balancer: Balancer, stop: threading.Event, calls_per_s: float, call: Callable[[str], bool],
                served: Counter[str] | None = None) -> None:
    """Call instances the balancer picks at a steady rate until `stop`; `call(instance)` says ok or not.

    A feed that lists no instance yet (published between a service's registry row and its instances')
    skips that beat instead of failing the loop."""
    period, next_call = 1.0 / calls_per_s, time.monotonic()
    while not stop.wait(max(0.0, next_call - time.monotonic())):
        next_call += period
        try:
            instance = balancer.pick()
        except NoInstancesError:
            continue
        started = time.perf_counter()
        ok = call(instance)
        balancer.report(instance, ok, (time.perf_counter() - started) * 1000)
        if served is not None:
            served[instance] += 1


class EqualWeights:
    """A WeightSource with fixed equal weights: plain round robin, the baseline svcpulse is compared to."""

    def __init__(self, addresses: list[str]) -> None:
        self._view = FeedView(dict.fromkeys(addresses, 1), "static", "normal", False, (1, False))

    def current(self) -> FeedView:
        return self._view


@dataclass(frozen=True)
class Call:
    t: float  # monotonic end time
    instance: str
    ok: bool
    latency_ms: float


class Traffic:
    """`threads` workers calling GET /work through a Balancer (swrr) until closed; every call recorded."""

    def __init__(self, source: WeightSource, threads: int = 8, picker: str = "swrr", timeout_s: float = 2.0) -> None:
        self.balancer = Balancer(source, picker)  # type: ignore[arg-type]
        self.calls: list[Call] = []
        self._threads = [threading.Thread(target=self._work, daemon=True) for _ in range(threads)]
        self._stop = threading.Event()
        self._timeout_s = timeout_s

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _work(self) -> None:
        with httpx.Client(timeout=self._timeout_s) as client:
            while not self._stop.is_set():
                try:
                    instance = self.balancer.pick()
                except NoInstancesError:  # a feed without instances yet (as in paced_calls): wait, not die
                    self._stop.wait(0.1)
                    continue
                started = time.perf_counter()
                try:
                    ok = client.get(f"http://{instance}/work").status_code < 500
                except httpx.HTTPError:
                    ok = False
                latency_ms = (time.perf_counter() - started) * 1000
                self.balancer.report(instance, ok, latency_ms)
                self.calls.append(Call(time.monotonic(), instance, ok, latency_ms))  # list.append is atomic

    def between(self, start: float, end: float) -> list[Call]:
        return [c for c in list(self.calls) if start <= c.t < end]

    @staticmethod
    def share(calls: list[Call], instance: str) -> float:
        return sum(c.instance == instance for c in calls) / max(1, len(calls))
