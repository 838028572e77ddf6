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


async def _connection(host: str, port: int, due: Iterator[float], result: LoadResult) -> None:
    """One keep-alive connection sending GET / at the `due` times (open loop: a late answer delays the
    next send, never the schedule); a connection closed before any response byte is reopened and the
    request retried once, as browsers, Go's net/http and curl do."""
    loop = asyncio.get_running_loop()
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    for when in due:
        await asyncio.sleep(max(0.0, when - loop.time()))
        for attempt in (1, 2):
            try:
                if reader is None or writer is None:
                    reader, writer = await asyncio.open_connection(host, port)
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as err:
                reader = writer = None
                if attempt == 1 and not getattr(err, "partial", b""):
                    result.retried += 1
                    continue
                result.failed[f"{type(err).__name__}: {err}"] += 1
                break
            try:
                length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n")
                                  if line.startswith(b"content-length")))
                await reader.readexactly(length)
            except (asyncio.IncompleteReadError, ConnectionError, StopIteration) as err:
                reader = writer = None
                result.failed[f"incomplete answer: {err!r}"] += 1
                break
            if head.startswith(b"HTTP/1.1 200"):
                result.ok += 1
            else:
                result.failed[head.split(b"\r\n")[0].decode()] += 1
            if b"connection: close" in head.lower():
                reader = writer = None
            break
    if writer is not None:
        writer.close()


def _load_process(url: str, rate: float, ready: Any, stop: Any, results: Any, connections: int = 16) -> None:
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

        await asyncio.gather(*(_connection(host, int(port), due(c), result) for c in range(connections)))
        result.seconds = loop.time() - start
        return result

    outcome = asyncio.run(run())
    results.put((outcome.ok, dict(outcome.failed), outcome.retried, outcome.seconds))


class Load:
    """Open-loop HTTP/1.1 keep-alive load at `rate` req/s from a process of its own (sharing no GIL with
    the API or the balancer loop under test) until closed. Every error or non-200 answer is a failure,
    except a request sent on a keep-alive connection the server closed before answering: that one is
    retried once, as real clients do (`result.retried` counts them)."""

    def __init__(self, url: str, rate: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.result, self._ready, self._stop = LoadResult(), context.Event(), context.Event()
        self._results = context.Queue()
        self._process = context.Process(target=_load_process, daemon=True,
                                        args=(url, rate, self._ready, self._stop, self._results))

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
