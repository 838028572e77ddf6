"""httpx client instrumentation (sync and async): a transport wrapper that emits one rpc event per request.

    client = httpx.Client(transport=SvcpulseTransport(config, callee="users", routes=["/users/{user_id}"]))
    client.get(url, extensions={"svcpulse_interface": "/users/{user_id}"})  # or per request

A transport wrapper rather than event hooks: hooks never see a request that failed (timeouts,
refused connections), and those are the outcomes routing cares most about.
Interface, first found wins: the request extension "svcpulse_interface", the request header
"x-svcpulse-interface", the first matching template of `routes`, else "unmatched" (never the raw
path: it carries ids). Callee: `callee` as a string, or a mapping of host (or "host:port") to
service, else the URL's host. Latency runs to the response headers (the body may be streamed later,
as in OpenTelemetry's httpx instrumentation); a timeout while reading a streamed body is not seen.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence

import httpx

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

INTERFACE_EXTENSION = "svcpulse_interface"
INTERFACE_HEADER = "x-svcpulse-interface"
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}")


def compile_template(template: str) -> re.Pattern[str]:
    """A regex matching the paths of a Starlette-style template ("/files/{p:path}" spans slashes)."""
    out, last = [], 0
    for m in _PARAM.finditer(template):
        out.append(re.escape(template[last : m.start()]))
        out.append(".+" if m.group(2) == "path" else "[^/]+")
        last = m.end()
    out.append(re.escape(template[last:]))
    return re.compile("".join(out))


class _Recorder:
    """What the sync and async transports share: naming the call and emitting its event."""

    def __init__(
        self,
        config: RpcConfig,
        callee: str | Mapping[str, str] | None = None,
        routes: Sequence[str] = (),
        propagate_caller: bool = True,
        emitter: Emitter | None = None,
    ) -> None:
        self.config, self.callee, self.propagate_caller = config, callee, propagate_caller
        self.routes = [(compile_template(t), t) for t in routes]
        self.emitter = emitter or get_emitter()

    def prepare(self, request: httpx.Request) -> bool:
        """Whether to measure this request; adds the caller header when measuring."""
        if not self.config.sampled():
            return False
        if self.propagate_caller and self.config.service:
            request.headers[CALLER_HEADER] = self.config.service
        return True

    def interface(self, request: httpx.Request) -> str:
        named = request.extensions.get(INTERFACE_EXTENSION) or request.headers.get(INTERFACE_HEADER)
        if named:
            return str(named)
        path = request.url.path
        for pattern, template in self.routes:
            if pattern.fullmatch(path):
                return template
        return UNMATCHED

    def callee_of(self, url: httpx.URL) -> str:
        if isinstance(self.callee, str):
            return self.callee
        if self.callee is not None:
            hostport = f"{url.host}:{url.port}" if url.port else url.host
            return self.callee.get(hostport) or self.callee.get(url.host) or url.host
        return url.host

    def record(
        self, request: httpx.Request, started: float, status: str, code: str, response: httpx.Response | None
    ) -> None:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        self.emitter.emit(
            build_event(
                self.config,
                caller=self.config.service,
                callee=self.callee_of(url),
                interface=self.interface(request),
                instance=f"{url.host}:{port}",
                side="client",
                started=started,
                status=status,
                code=code,
                version=response.headers.get(VERSION_HEADER, "") if response is not None else "",
            )
        )

    def record_response(self, request: httpx.Request, started: float, response: httpx.Response) -> None:
        code = response.status_code
        self.record(request, started, http_status(code), str(code), response)

    def record_exception(self, request: httpx.Request, started: float, exc: Exception) -> None:
        status = "timeout" if isinstance(exc, httpx.TimeoutException) else "error"
        self.record(request, started, status, type(exc).__name__, None)  # e.g. "ReadTimeout", "ConnectError"


class SvcpulseTransport(httpx.BaseTransport):
    """Wraps a sync transport (default httpx.HTTPTransport()); other arguments as _Recorder."""

    def __init__(self, config: RpcConfig, transport: httpx.BaseTransport | None = None, **kwargs: object) -> None:
        self._inner = transport or httpx.HTTPTransport()
        self._recorder = _Recorder(config, **kwargs)  # type: ignore[arg-type]

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        recorder = self._recorder
        if not recorder.prepare(request):
            return self._inner.handle_request(request)
        started = time.perf_counter()
        token = otel.enter("client")  # an OpenTelemetry span of this call must not count it again
        try:
            response = self._inner.handle_request(request)
        except Exception as exc:
            recorder.record_exception(request, started, exc)
            raise
        finally:
            otel.leave(token)
        recorder.record_response(request, started, response)
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncSvcpulseTransport(httpx.AsyncBaseTransport):
    """Wraps an async transport (default httpx.AsyncHTTPTransport()); other arguments as _Recorder."""

    def __init__(self, config: RpcConfig, transport: httpx.AsyncBaseTransport | None = None, **kwargs: object) -> None:
        self._inner = transport or httpx.AsyncHTTPTransport()
        self._recorder = _Recorder(config, **kwargs)  # type: ignore[arg-type]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        recorder = self._recorder
        if not recorder.prepare(request):
            return await self._inner.handle_async_request(request)
        started = time.perf_counter()
        token = otel.enter("client")  # an OpenTelemetry span of this call must not count it again
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as exc:
            recorder.record_exception(request, started, exc)
            raise
        finally:
            otel.leave(token)
        recorder.record_response(request, started, response)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
