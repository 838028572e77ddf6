"""Builders of real OTLP messages (opentelemetry-proto) for the receiver's tests and bench/otlp.py."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

KINDS = {"internal": Span.SPAN_KIND_INTERNAL, "server": Span.SPAN_KIND_SERVER, "client": Span.SPAN_KIND_CLIENT,
         "producer": Span.SPAN_KIND_PRODUCER, "consumer": Span.SPAN_KIND_CONSUMER,
         "unspecified": Span.SPAN_KIND_UNSPECIFIED}
STATUS = {"unset": Status.STATUS_CODE_UNSET, "ok": Status.STATUS_CODE_OK, "error": Status.STATUS_CODE_ERROR}


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    return AnyValue(string_value=str(value))


def key_values(attributes: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in attributes.items()]


def now_ns() -> int:
    return time.time_ns()


def span(kind: str = "server", name: str = "GET /users/{id}", attributes: Mapping[str, Any] | None = None,
         start_ns: int | None = None, duration_ms: float = 12.5, status: str = "unset") -> Span:
    start = now_ns() - 1_000_000_000 if start_ns is None else start_ns
    return Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name=name, kind=KINDS[kind],
                start_time_unix_nano=start, end_time_unix_nano=start + int(duration_ms * 1_000_000),
                attributes=key_values(attributes or {}), status=Status(code=STATUS[status]))


def resource_spans(resource: Mapping[str, Any], spans: Sequence[Span]) -> ResourceSpans:
    return ResourceSpans(resource=Resource(attributes=key_values(resource)),
                         scope_spans=[ScopeSpans(spans=list(spans))])


def request(*resources: ResourceSpans) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=list(resources))
