"""One call, counted once: a call an svcpulse interceptor reports is marked on its OpenTelemetry span.

A service may run svcpulse's interceptors and an OpenTelemetry SDK exporting to `svcpulse otlp` at once
(while migrating, or because a Collector forwards everything). Both would report the same call, so the
interceptor marks the OTel span of that call with `svcpulse.measured = true` and the receiver skips
marked spans (docs/otlp.md, "Mixed fleets"):

- the OTel span was started outside the interceptor (FastAPIInstrumentor, gRPC's server instrumentation
  listed first, `instrument_client`): it is the current span when the interceptor runs; marked here.
- it starts inside (HTTPXClientInstrumentor().instrument(), a gRPC client channel wrapped by svcpulse
  after OTel): the interceptor runs the call in a context flagged with its side, and `MarkMeasured`, a
  span processor on the TracerProvider, marks the span started there:
      provider.add_span_processor(MarkMeasured())

Without opentelemetry installed, enter() and leave() do nothing.
"""

from __future__ import annotations

from typing import Any

MEASURED = "svcpulse.measured"

try:
    from opentelemetry import context as _context
    from opentelemetry import trace as _trace
except ImportError:  # opentelemetry-api absent: nothing to mark
    _trace = None
else:
    _KEY = _context.create_key(MEASURED)
    _KINDS = {"server": _trace.SpanKind.SERVER, "client": _trace.SpanKind.CLIENT}


def enter(side: str) -> Any:
    """Mark the current span when it is this call's (same kind); flag the context for spans started inside.
    Returns a token for leave()."""
    if _trace is None:
        return None
    span = _trace.get_current_span()
    if span.is_recording() and getattr(span, "kind", None) is _KINDS[side]:
        span.set_attribute(MEASURED, True)
    return _context.attach(_context.set_value(_KEY, side))


def leave(token: Any) -> None:
    if token is not None:
        _context.detach(token)


try:
    from opentelemetry.sdk.trace import SpanProcessor
except ImportError:  # no SDK, no spans to mark
    pass
else:

    class MarkMeasured(SpanProcessor):
        """Marks a span started directly inside a call an svcpulse interceptor reports (same kind)."""

        def on_start(self, span: Any, parent_context: Any = None) -> None:
            side = _context.get_value(_KEY, parent_context)
            if side is not None and span.kind is _KINDS[side]:
                span.set_attribute(MEASURED, True)
