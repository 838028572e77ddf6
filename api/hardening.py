"""Request limits for the API: body and query size caps, rate limits on writes and reads, optional CORS.

Pure ASGI middleware so a refused request never reaches routing or a handler (and never the store).
Rate limits are per caller: the authenticated user (however the `Bearer` scheme is spelled), or
else the client address, so inventing tokens or varying the header gains nothing. Buckets expire
once refilled and are bounded in number, so no sequence of requests grows the API's memory.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.auth import Directory, bearer_token
from core.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_CALLERS = 10_000  # buckets kept at most; past it the least recently used goes (it restarts full)
# Reads that are rate limited: the query API. The feed is served from memory (and long-polled by
# balancers), health and metrics must answer probes, the console is static files.
_UNLIMITED_READS = ("/v1/weights", "/healthz", "/readyz", "/metrics")


async def _refuse(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


class TokenBuckets:
    """Per-caller token buckets: `rate_per_s` refill, `burst` capacity. Thread-safe, clock injected.

    A bucket that has refilled is the same as none, so it is dropped; at most `max_callers` are kept
    (least recently used first out), so memory stays bounded whatever the callers do.
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_callers: int = MAX_CALLERS) -> None:
        self.rate, self.burst, self.clock, self.max_callers = rate_per_s, burst, clock, max_callers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # caller -> (tokens, last refill)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, caller: str, cost: float = 1.0) -> float:
        """0 if `cost` tokens were taken, else the seconds until they are available (cost <= burst)."""
        with self._lock:
            now = self.clock()
            self._expire(now)
            tokens, last = self._buckets.pop(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            taken = tokens >= cost
            self._buckets[caller] = (tokens - cost if taken else tokens, now)  # re-inserted: most recent last
            if len(self._buckets) > self.max_callers:
                self._buckets.popitem(last=False)
            return 0.0 if taken else (cost - tokens) / self.rate

    def _expire(self, now: float) -> None:
        """Drop buckets, oldest first, that are full again (their refill time has passed)."""
        while self._buckets:
            tokens, last = next(iter(self._buckets.values()))
            if last + (self.burst - tokens) / self.rate > now:
                return
            self._buckets.popitem(last=False)


def caller_key(scope: Scope) -> str:
    """Who is calling: the authenticated user, else the client address (unknown tokens count as anonymous)."""
    header = next((value for name, value in scope.get("headers", ()) if name == b"authorization"), b"")
    token = bearer_token(header.decode("latin-1"))
    app = scope.get("app")
    directory: Directory | None = getattr(getattr(app, "state", None), "directory", None)
    if token and directory is not None:
        principal = directory.authenticate(token)
        if principal is not None:
            return f"user:{principal.name}"
    client = scope.get("client") or ("?", 0)
    return f"addr:{client[0]}"


def _limited_read(scope: Scope) -> bool:
    path = scope.get("path", "")
    return scope["method"] in ("GET", "HEAD") and path.startswith("/v1/") and not path.startswith(_UNLIMITED_READS)


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.max_body, self.max_query = app, settings.max_body_bytes, settings.max_query_bytes
        self.writes = TokenBuckets(settings.write_rate_per_minute / 60, settings.write_burst)
        self.reads = TokenBuckets(settings.read_rate_per_minute / 60, settings.read_burst)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > self.max_query:
            await _refuse(send, 414, f"query string longer than {self.max_query} bytes")
            return
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            await _refuse(send, 413, f"request body larger than {self.max_body} bytes")
            return
        buckets, kind = (self.writes, "writes") if scope["method"] in WRITES else (self.reads, "reads")
        if kind == "writes" or _limited_read(scope):
            wait_s = buckets.take(caller_key(scope))
            if wait_s:
                await _refuse(send, 429, f"too many {kind}: at most {buckets.rate * 60:g} per minute "
                              f"after a burst of {buckets.burst}; retry in {wait_s:.1f} s",
                              {"Retry-After": str(max(1, round(wait_s)))})
                return
        if declared is None and scope["method"] in WRITES:
            receive = await self._buffered(receive)
            if receive is None:
                await _refuse(send, 413, f"request body larger than {self.max_body} bytes")
                return
        await self.app(scope, receive, send)

    async def _buffered(self, receive: Receive) -> Receive | None:
        """Read a body sent without a length (chunked) up to the cap; None when it is longer."""
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_body:
                return None
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        return replay


def install(app: FastAPI, settings: Settings) -> None:
    """Limits on every request; CORS only for the origins configured (off by default)."""
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type", "If-None-Match"],
                           expose_headers=["ETag"])
    app.add_middleware(LimitsMiddleware, settings=settings)
