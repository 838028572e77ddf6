"""ASGI middleware (server side): one rpc event per HTTP request, interface = the matched route template.

    app.add_middleware(SvcpulseMiddleware, config=RpcConfig(service="users", version="1.4.2"))

A pure ASGI middleware (not BaseHTTPMiddleware, which costs a task per request). Starlette and
FastAPI routers put the matched route in scope["route"] on the scope dict we handed down, so it is
read after the app returns; its path_format is the template ("/users/{user_id}"). No route (404 from
the router, a plain ASGI app) gives "unmatched": raw paths carry ids and would explode cardinality.
Latency runs until the app returns, i.e. the whole response body has been handed to the server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from collectors.rpc import otel
from collectors.rpc.common import (
    CALLER_HEADER,
    UNMATCHED,
    VERSION_HEADER,
    RpcConfig,
    build_event,
    http_status,
)
from collectors.rpc.emitter import Emitter, get_emitter

Scope = dict[str, Any]
_CALLER = CALLER_HEADER.encode()


def route_template(scope: Scope, root_path: str = "") -> str:
    """The matched route's template, with the prefix of any Mount it sits under; else "unmatched"."""
    route = scope.get("route")
    path_format = getattr(route, "path_format", None)
    if path_format is None or not hasattr(route, "endpoint"):  # a Mount/Host matched, not an endpoint
        return UNMATCHED
    # Under a Mount, root_path grew by the mount's prefix (a literal prefix in practice);
    # `root_path` is the value before routing (uvicorn --root-path), not part of the template.
    return scope.get("root_path", "")[len(root_path) :] + path_format


def _caller(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == _CALLER:
            return value.decode("latin-1")
    return ""


class SvcpulseMiddleware:
    def __init__(self, app: Any, config: RpcConfig, emitter: Emitter | None = None) -> None:
        self.app, self.config = app, config
        self.emitter = emitter or get_emitter()
        # Clients read this header to label their events with the callee's version.
        self._version_header = (VERSION_HEADER.encode(), config.version.encode()) if config.version else None

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.config.sampled():
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 0
        root_path = scope.get("root_path", "")

        async def send_wrapper(message: dict[str, Any]) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
                if self._version_header is not None:
                    message["headers"] = [*message.get("headers", ()), self._version_header]
            await send(message)

        token = otel.enter("server")  # an OpenTelemetry span of this call must not count it again
        try:
            await self.app(scope, receive, send_wrapper)
        except asyncio.CancelledError:  # the client went away: not the service's failure
            self._record(scope, root_path, started, "ok", "499")
            raise
        except Exception:
            self._record(scope, root_path, started, "error", str(status_code if status_code >= 500 else 500))
            raise
        finally:
            otel.leave(token)
        self._record(scope, root_path, started, http_status(status_code), str(status_code))

    def _record(self, scope: Scope, root_path: str, started: float, status: str, code: str) -> None:
        config = self.config
        server = scope.get("server")
        instance = config.instance or (f"{server[0]}:{server[1]}" if server else "")
        self.emitter.emit(
            build_event(
                config,
                caller=_caller(scope),
                callee=config.service,
                interface=route_template(scope, root_path),
                instance=instance,
                side="server",
                started=started,
                status=status,
                code=code,
                version=config.version,
            )
        )
