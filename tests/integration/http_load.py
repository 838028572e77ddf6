"""Open-loop HTTP/1.1 keep-alive load from a process of its own, counting failures (tests of balancers
that change under load: tests/integration/test_balancers_real.py)."""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadResult:
    ok: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    retried: int = 0  # closed before any response byte, then retried once (RFC 9112 9.3.1)
    seconds: float = 0.0


class Unanswered(Exception):
    """A request that got no complete answer; its text is what Load counts it as."""


class KeepAliveConnection:
    """One HTTP/1.1 keep-alive connection for `GET /`, reopened when the server closes it. A request sent on a
    connection closed before any response byte is retried on a new one, once by default, as browsers, Go's
    net/http and curl do (RFC 9112 9.3.1); `retried` counts the retries."""

    def __init__(self, host: str, port: int, retries: int = 1) -> None:
        self.host, self.port, self.retries, self.retried = host, port, retries, 0
        self._request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def get(self) -> tuple[bytes, bytes]:
        """(status line and headers, body); Unanswered when no complete answer came."""
        for attempt in range(self.retries + 1):
            try:
                if self._reader is None or self._writer is None:
                    self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
                self._writer.write(self._request)
                head = await self._reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as err:
                self.close()
                if attempt < self.retries and not getattr(err, "partial", b""):
                    self.retried += 1
                    continue
                raise Unanswered(f"{type(err).__name__}: {err}") from err
            try:
                length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                                  if line.startswith(b"content-length")))
                body = await self._reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError, StopIteration) as err:
                self.close()
                raise Unanswered(f"incomplete answer: {err!r}") from err
            if b"connection: close" in head.lower():
                self.close()
            return head, body
        raise AssertionError("unreachable: the last attempt returns or raises")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def _connection(host: str, port: int, due: Iterator[float], result: LoadResult, retries: int) -> None:
    """One keep-alive connection sending GET / at the `due` times (open loop: a late answer delays the
    next send, never the schedule)."""
    loop = asyncio.get_running_loop()
    connection = KeepAliveConnection(host, port, retries)
    for when in due:
        await asyncio.sleep(max(0.0, when - loop.time()))
        try:
            head, _ = await connection.get()
        except Unanswered as err:
            result.failed[str(err)] += 1
            continue
        if head.startswith(b"HTTP/1.1 200"):
            result.ok += 1
        else:
            result.failed[head.split(b"\r\n")[0].decode()] += 1
    connection.close()
    result.retried += connection.retried


def bodies(url: str, calls: int, connections: int = 8) -> list[bytes]:
    """The bodies of `calls` GET / answers, sent over `connections` keep-alive connections at once (retried
    as Load does); any other failure or non-200 answer raises."""
    host, port = url.removeprefix("http://").rsplit(":", 1)

    async def one_connection(count: int) -> list[bytes]:
        connection, found = KeepAliveConnection(host, int(port)), []
        for _ in range(count):
            head, body = await connection.get()
            if not head.startswith(b"HTTP/1.1 200"):
                raise Unanswered(head.split(b"\r\n")[0].decode())
            found.append(body)
        connection.close()
        return found

    async def run() -> list[bytes]:
        counts = [calls // connections + (1 if n < calls % connections else 0) for n in range(connections)]
        return [body for found in await asyncio.gather(*(one_connection(n) for n in counts)) for body in found]

    return asyncio.run(run())


def _load_process(url: str, rate: float, retries: int, ready: Any, stop: Any, results: Any,
                  connections: int = 16) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)

    async def run() -> LoadResult:
        result, loop = LoadResult(), asyncio.get_running_loop()
        start = loop.time() + 0.1
        ready.set()

        def due(first: int) -> Iterator[float]:  # request i is due at start + i / rate, until stopped
            i = first
            while not stop.is_set():
                yield start + i / rate
                i += connections

        await asyncio.gather(*(_connection(host, int(port), due(c), result, retries) for c in range(connections)))
        result.seconds = loop.time() - start
        return result

    outcome = asyncio.run(run())
    results.put((outcome.ok, dict(outcome.failed), outcome.retried, outcome.seconds))


class Load:
    """Open-loop HTTP/1.1 keep-alive load at `rate` req/s from a process of its own (sharing no GIL with
    the API or the balancer loop under test) until closed. Every error or non-200 answer is a failure,
    except a request sent on a keep-alive connection the server closed before answering: that one is
    retried `retries` times (once by default, as real clients do; `result.retried` counts them)."""

    def __init__(self, url: str, rate: float, retries: int = 1) -> None:
        context = multiprocessing.get_context("spawn")
        self.result, self._ready, self._stop = LoadResult(), context.Event(), context.Event()
        self._results = context.Queue()
        self._process = context.Process(target=_load_process, daemon=True,
                                        args=(url, rate, retries, self._ready, self._stop, self._results))

    def __enter__(self) -> Load:
        self._process.start()
        if not self._ready.wait(60):
            raise RuntimeError("the load generator process did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        ok, failed, retried, seconds = self._results.get(timeout=120)
        self._process.join(timeout=30)
        self.result = LoadResult(ok, collections.Counter(failed), retried, seconds)
