"""grpcio interceptors (client and server, unary and streaming) emitting one rpc event per call.

    channel = grpc.intercept_channel(grpc.insecure_channel(target),
                                     SvcpulseClientInterceptor(config, callee="users", instance=target))
    server = grpc.server(pool, interceptors=[SvcpulseServerInterceptor(config)])

interface = the full method name ("/pkg.Service/Method"); code = the grpc.StatusCode name.
Client side: the call's end is taken from the call object's done-callback, so futures and
response streams are timed to the RPC's termination, not to when the stub returned.
Server side: a streamed response is timed until the handler's iterator is exhausted or fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import grpc

from collectors.rpc import otel
from collectors.rpc.common import CALLER_HEADER, RpcConfig, build_event, grpc_status
from collectors.rpc.emitter import Emitter, get_emitter


class _CallDetails(NamedTuple):
    """grpc.ClientCallDetails with our caller metadata added (the original is immutable)."""

    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class _ClientCallDetails(_CallDetails, grpc.ClientCallDetails):
    pass


def _code_name(code: Any) -> str:
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


class SvcpulseClientInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, config: RpcConfig, callee: str, instance: str = "", emitter: Emitter | None = None) -> None:
        self.config, self.callee, self.instance = config, callee, instance
        self.emitter = emitter or get_emitter()

    def _intercept(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        if not self.config.sampled():
            return continuation(details, request)
        details = self._with_caller(details)
        started = time.perf_counter()
        token = otel.enter("client")  # an OpenTelemetry span of this call must not count it again
        try:
            call = continuation(details, request)
        except Exception:  # continuations report RPC failures in the call object; this is a bug path
            self._record(details.method, started, "UNKNOWN")
            raise
        finally:
            otel.leave(token)

        def done(*_: Any) -> None:
            self._record(details.method, started, _code_name(call.code()))

        if isinstance(call, grpc.Future):
            call.add_done_callback(done)  # runs at once when the call already ended
        elif not call.add_callback(done):
            done()
        return call

    intercept_unary_unary = _intercept
    intercept_unary_stream = _intercept
    intercept_stream_unary = _intercept
    intercept_stream_stream = _intercept

    def _with_caller(self, details: Any) -> _ClientCallDetails:
        metadata = [*(details.metadata or ()), (CALLER_HEADER, self.config.service)]
        return _ClientCallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def _record(self, method: str, started: float, code: str) -> None:
        self.emitter.emit(
            build_event(
                self.config,
                caller=self.config.service,
                callee=self.callee,
                interface=method,
                instance=self.instance,
                side="client",
                started=started,
                status=grpc_status(code),
                code=code,
                version="",
            )
        )


class SvcpulseServerInterceptor(grpc.ServerInterceptor):
    def __init__(self, config: RpcConfig, emitter: Emitter | None = None) -> None:
        self.config = config
        self.emitter = emitter or get_emitter()

    def intercept_service(self, continuation: Callable[..., Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or not self.config.sampled():
            return handler
        caller = next((v for k, v in details.invocation_metadata or () if k == CALLER_HEADER), "")
        record = _ServerRecorder(self, details.method, caller)
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=record.wrap_unary(handler.unary_unary))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=record.wrap_unary(handler.stream_unary))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=record.wrap_stream(handler.unary_stream))
        return handler._replace(stream_stream=record.wrap_stream(handler.stream_stream))


class _ServerRecorder:
    """Times one server call and names its outcome from the servicer context."""

    def __init__(self, owner: SvcpulseServerInterceptor, method: str, caller: str) -> None:
        self.owner, self.method, self.caller = owner, method, caller

    def wrap_unary(self, behavior: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        def unary(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            token = otel.enter("server")  # an OpenTelemetry span of this call must not count it again
            try:
                response = behavior(request, context)
            except Exception:
                self.record(context, started, failed=True)
                raise
            finally:
                otel.leave(token)
            self.record(context, started, failed=False)
            return response

        return unary

    def wrap_stream(self, behavior: Callable[[Any, Any], Iterator[Any]]) -> Callable[[Any, Any], Iterator[Any]]:
        def stream(request: Any, context: Any) -> Iterator[Any]:
            started = time.perf_counter()
            otel.leave(otel.enter("server"))  # marks an enclosing OpenTelemetry span; no context across yields
            try:
                yield from behavior(request, context)
            except Exception:
                self.record(context, started, failed=True)
                raise
            self.record(context, started, failed=False)

        return stream

    def record(self, context: Any, started: float, failed: bool) -> None:
        code = context.code()  # set by set_code() or abort(); None when the handler did not say
        name = "UNKNOWN" if failed else "OK"  # grpc answers an unhandled exception with UNKNOWN
        if isinstance(code, grpc.StatusCode):
            name = code.name
        remaining = context.time_remaining()
        if name == "OK" and remaining is not None and remaining <= 0:
            name = "DEADLINE_EXCEEDED"  # answered too late: the client has already given up
        owner, config = self.owner, self.owner.config
        owner.emitter.emit(
            build_event(
                config,
                caller=self.caller,
                callee=config.service,
                interface=self.method,
                instance=config.instance,
                side="server",
                started=started,
                status=grpc_status(name),
                code=name,
                version=config.version,
            )
        )
