"""Request limits for the API: body and query size caps, a rate limit on writes, optional CORS.

Pure ASGI middleware so a refused request never reaches routing or a handler (and never the store).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from core.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def _refuse(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


class TokenBuckets:
    """Per-caller token buckets: `rate_per_s` refill, `burst` capacity. Thread-safe, clock injected."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.clock = rate_per_s, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, caller: str, cost: float = 1.0) -> float:
        """0 if `cost` tokens were taken, else the seconds until they are available (cost <= burst)."""
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(caller, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= cost:
                self._buckets[caller] = (tokens - cost, now)
                return 0.0
            self._buckets[caller] = (tokens, now)
            return (cost - tokens) / self.rate


def _caller(scope: Scope) -> str:
    """Who is writing: the bearer token (hashed, never kept in clear) or else the client address."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            return "token:" + hashlib.sha256(value).hexdigest()[:16]
    client = scope.get("client") or ("?", 0)
    return f"addr:{client[0]}"


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app, self.max_body, self.max_query = app, settings.max_body_bytes, settings.max_query_bytes
        self.writes = TokenBuckets(settings.write_rate_per_minute / 60, settings.write_burst)

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
        if scope["method"] in WRITES:
            wait_s = self.writes.take(_caller(scope))
            if wait_s:
                await _refuse(send, 429, f"too many writes: at most {self.writes.rate * 60:g} per minute "
                              f"after a burst of {self.writes.burst}; retry in {wait_s:.1f} s",
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
